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

}  // namespace
}  // namespace hostvisor
