#include "vmm/firmware_image.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "arch/x86_64/layout.h"

namespace hostvisor {
namespace {

namespace fs = std::filesystem;

fs::path write_image(const std::string& name, size_t size) {
  const fs::path path = fs::temp_directory_path() / ("hv-firmware-image-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream out(path, std::ios::binary);
  for (size_t i = 0; i < size; ++i) out.put(static_cast<char>(i * 7));
  return path;
}

TEST(FirmwareImage, AMissingImageNamesThePackageToInstall) {
  auto image = load_bios_image("/nonexistent/bios-256k.bin", "seabios");
  ASSERT_FALSE(image.ok());
  EXPECT_NE(image.error().message().find("/nonexistent/bios-256k.bin"), std::string::npos);
  EXPECT_NE(image.error().message().find("apt-get install seabios"), std::string::npos) << image.error().message();
}

TEST(FirmwareImage, AFileThatIsNoBiosImageIsRefused) {
  const fs::path odd = write_image("odd", 100000);  // not a multiple of 64 KiB
  auto image = load_bios_image(odd.string(), "seabios");
  fs::remove(odd);
  ASSERT_FALSE(image.ok());
  EXPECT_NE(image.error().message().find("not a BIOS image"), std::string::npos) << image.error().message();
}

TEST(FirmwareImage, TheRomEndsAt4GibAndItsTailIsInTheIsaBiosArea) {
  const fs::path path = write_image("rom", 256 * 1024);
  auto image = load_bios_image(path.string(), "seabios");
  fs::remove(path);
  ASSERT_TRUE(image.ok()) << image.error().message();
  const MemoryRegionSpec rom = firmware_rom_region(image->size());
  EXPECT_EQ(rom.start.value(), 0xfffc0000u);
  EXPECT_EQ(rom.size, 256u * 1024);
  auto memory = GuestMemory::create({{GuestAddress(0), 1 << 20}, rom});
  ASSERT_TRUE(memory.ok());
  ASSERT_TRUE(place_bios_image(*memory, *image).ok());
  // The reset vector's bytes are the image's last 16.
  std::vector<uint8_t> vector(16);
  ASSERT_TRUE(memory->read(GuestAddress(0xfffffff0), vector).ok());
  EXPECT_TRUE(std::equal(vector.begin(), vector.end(), image->end() - 16));
  std::vector<uint8_t> low(kIsaBiosSize);
  ASSERT_TRUE(memory->read(GuestAddress(0xe0000), low).ok());
  EXPECT_TRUE(std::equal(low.begin(), low.end(), image->end() - static_cast<std::ptrdiff_t>(kIsaBiosSize)));
}

TEST(FirmwareImage, ParsesTheKinds) {
  EXPECT_EQ(*parse_firmware_kind("bios"), FirmwareKind::kBios);
  EXPECT_EQ(*parse_firmware_kind("none"), FirmwareKind::kNone);
  EXPECT_EQ(*parse_firmware_kind("uefi"), FirmwareKind::kUefi);
  EXPECT_FALSE(parse_firmware_kind("BIOS").ok());
}

TEST(FirmwareImage, UefiTakesAVariableStorePath) {
  auto plain = parse_firmware_option("uefi");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->kind, FirmwareKind::kUefi);
  EXPECT_EQ(plain->uefi_vars, "");
  auto with_vars = parse_firmware_option("uefi,vars=/vm/OVMF_VARS.fd");
  ASSERT_TRUE(with_vars.ok());
  EXPECT_EQ(with_vars->uefi_vars, "/vm/OVMF_VARS.fd");
  EXPECT_FALSE(parse_firmware_option("bios,vars=/x").ok());
  EXPECT_FALSE(parse_firmware_option("uefi,vars=").ok());
  EXPECT_FALSE(parse_firmware_option("uefi,code=/x").ok());
  EXPECT_FALSE(parse_firmware_option("uefi,vars=/a,vars=/b").ok());
}

// Needs Debian's ovmf package (the firmware tests' set-up installs it).
TEST(FirmwareImage, AMissingVariableStoreIsCreatedFromOvmfsTemplateAndFillsTheFlashBelow4Gib) {
  const fs::path vars = fs::temp_directory_path() / ("hv-firmware-vars-" + std::to_string(::getpid()) + ".fd");
  fs::remove(vars);
  auto flash = load_uefi_flash(vars.string());
  ASSERT_TRUE(flash.ok()) << flash.error().message();
  EXPECT_EQ(fs::file_size(vars), fs::file_size(kOvmfVarsTemplatePath));
  EXPECT_EQ(flash->code.size() + flash->vars.size(), kOvmfFlashSize);
  EXPECT_EQ(flash->code_address() + flash->code.size(), arch::kHighRamStart);
  EXPECT_EQ(flash->vars_address(), 0xffc00000u) << "where OVMF's 4 MiB build looks for its variables";
  EXPECT_TRUE(flash->vars_file.valid());
  // An existing store is used as it is; one of another size is refused.
  {
    std::ofstream(vars, std::ios::binary | std::ios::app) << "x";
  }
  auto grown = load_uefi_flash(vars.string());
  fs::remove(vars);
  ASSERT_FALSE(grown.ok());
  EXPECT_NE(grown.error().message().find("needs a 540672-byte variable store"), std::string::npos)
      << grown.error().message();
}

TEST(FirmwareImage, AVariableStoreThatCannotBeCreatedSaysWhere) {
  auto flash = load_uefi_flash("/nonexistent-dir/vars.fd");
  ASSERT_FALSE(flash.ok());
  EXPECT_NE(flash.error().message().find("--firmware uefi,vars=/nonexistent-dir/vars.fd"), std::string::npos)
      << flash.error().message();
}

}  // namespace
}  // namespace hostvisor
