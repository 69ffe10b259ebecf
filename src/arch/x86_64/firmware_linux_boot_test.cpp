#include "arch/x86_64/firmware_linux_boot.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86_64/bzimage.h"
#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using namespace bootparam;
using namespace testing;

uint32_t get32(const std::vector<uint8_t>& b, uint64_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

TEST(FirmwareLinuxBoot, SplitsTheImageAndFillsTheHeaderForTheRealModeProtocol) {
  const auto file = make_bzimage(BzImageSpec{});
  const auto initrd = pattern(3, 10000);
  const MemoryLayout layout = *memory_layout(256 * kMiB);
  auto boot = prepare_firmware_linux_boot(file, initrd, "console=ttyS0", layout);
  ASSERT_TRUE(boot.ok()) << boot.error().message();
  ASSERT_EQ(boot->setup.size(), 3u * 512);  // setup_sects 2 + the boot sector
  EXPECT_EQ(std::vector<uint8_t>(file.begin() + 3 * 512, file.end()), boot->kernel);
  EXPECT_EQ(boot->setup[kTypeOfLoader], 0xb0);
  EXPECT_TRUE(boot->setup[kLoadFlags] & kCanUseHeap);
  EXPECT_TRUE(boot->setup[kLoadFlags] & kLoadedHigh);  // kept
  EXPECT_EQ(get32(boot->setup, kCmdLinePtr), kFirmwareCmdlineAddress);
  EXPECT_EQ(boot->setup[kHeapEndPtr] | boot->setup[kHeapEndPtr + 1] << 8, 0xfe00);
  // The initrd sits page-aligned at the top of low RAM, under what firmware keeps.
  EXPECT_EQ(boot->initrd_address % kPageSize, 0u);
  EXPECT_LE(boot->initrd_address + initrd.size(), layout.low_ram_end - kFirmwareTopReserve);
  EXPECT_GT(boot->initrd_address + initrd.size() + kPageSize, layout.low_ram_end - kFirmwareTopReserve);
  EXPECT_EQ(get32(boot->setup, kRamdiskImage), boot->initrd_address);
  EXPECT_EQ(get32(boot->setup, kRamdiskSize), initrd.size());
  EXPECT_EQ(boot->cmdline, "console=ttyS0");
}

TEST(FirmwareLinuxBoot, TheInitrdStaysUnderTheKernelsLimit) {
  BzImageSpec spec;
  spec.initrd_addr_max = 0x00ffffff;  // 16 MiB
  auto boot = prepare_firmware_linux_boot(make_bzimage(spec), pattern(1, 5000), "", *memory_layout(256 * kMiB));
  ASSERT_TRUE(boot.ok()) << boot.error().message();
  EXPECT_LE(boot->initrd_address + 5000, 0x01000000u);
}

TEST(FirmwareLinuxBoot, RefusesWhatTheRealModeProtocolCannotCarry) {
  const MemoryLayout layout = *memory_layout(256 * kMiB);
  auto not_linux = prepare_firmware_linux_boot(std::vector<uint8_t>(4096, 0), {}, "", layout);
  ASSERT_FALSE(not_linux.ok());
  EXPECT_NE(not_linux.error().message().find("bzImage"), std::string::npos);

  BzImageSpec old;
  old.version = 0x0201;
  EXPECT_FALSE(prepare_firmware_linux_boot(make_bzimage(old), {}, "", layout).ok());

  BzImageSpec short_cmdline;
  short_cmdline.cmdline_size = 8;
  auto long_cmdline = prepare_firmware_linux_boot(make_bzimage(short_cmdline), {}, "console=ttyS0", layout);
  ASSERT_FALSE(long_cmdline.ok());
  EXPECT_NE(long_cmdline.error().message().find("at most 8"), std::string::npos);

  // An initrd that would reach down into the kernel is refused.
  auto huge = prepare_firmware_linux_boot(make_bzimage(BzImageSpec{}), std::vector<uint8_t>(254 * kMiB, 1), "", layout);
  EXPECT_FALSE(huge.ok());
}

}  // namespace
}  // namespace hostvisor::arch
