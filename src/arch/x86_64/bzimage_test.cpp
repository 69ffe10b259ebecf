#include "arch/x86_64/bzimage.h"

#include <gtest/gtest.h>

#include <string>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using namespace testing;
using namespace bootparam;

template <typename T>
T zp(const GuestMemory& m, uint64_t offset) {
  return *m.read_obj<T>(GuestAddress(kZeroPageAddress + offset));
}

std::string read_string(const GuestMemory& m, uint64_t address) {
  std::string s;
  for (;;) {
    const char c = static_cast<char>(*m.read_obj<uint8_t>(GuestAddress(address + s.size())));
    if (c == '\0') return s;
    s.push_back(c);
  }
}

std::vector<uint8_t> read_bytes(const GuestMemory& m, uint64_t address, uint64_t size) {
  std::vector<uint8_t> out(size);
  EXPECT_TRUE(m.read(GuestAddress(address), out).ok());
  return out;
}

void expect_error(const Result<BootSetup>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(BzImage, LoadsAtPreferredAddressAndFillsTheZeroPage) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  const auto file = make_bzimage(spec);
  const auto initrd = pattern(77, 300000);
  KernelImage image{file, initrd, "console=ttyS0 root=/dev/vda"};
  auto setup = load_bzimage(vm.memory, vm.layout, image);
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kLinuxBzImage);

  // The protected-mode kernel (after 3 setup sectors) sits at pref_address.
  EXPECT_EQ(read_bytes(vm.memory, 0x1000000, spec.payload_size), pattern(kBzImagePayloadSeed, spec.payload_size));
  EXPECT_EQ(setup->regs.rip, 0x1000000u + 0x200);
  EXPECT_EQ(setup->regs.rsi, kZeroPageAddress);

  // The setup header was copied; the loader's fields are filled in.
  EXPECT_EQ(zp<uint32_t>(vm.memory, kHeaderMagic), 0x53726448u);
  EXPECT_EQ(zp<uint16_t>(vm.memory, kVersion), 0x020fu);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kInitSize), spec.init_size);
  EXPECT_EQ(zp<uint8_t>(vm.memory, kTypeOfLoader), 0xffu);
  EXPECT_EQ(zp<uint8_t>(vm.memory, kLoadFlags), kLoadedHigh | kCanUseHeap);
  EXPECT_EQ(zp<uint64_t>(vm.memory, kSetupData), 0u);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kCode32Start), 0x1000000u);
  EXPECT_EQ(zp<uint8_t>(vm.memory, 0x000), 0u);  // outside the header: zeroed
  const uint32_t cmd_line_ptr = zp<uint32_t>(vm.memory, kCmdLinePtr);
  EXPECT_EQ(cmd_line_ptr, kCmdlineAddress);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kExtCmdLinePtr), 0u);
  EXPECT_EQ(read_string(vm.memory, cmd_line_ptr), "console=ttyS0 root=/dev/vda");

  // The initrd: page aligned, as high as RAM allows, above the kernel's init_size.
  const uint32_t ramdisk = zp<uint32_t>(vm.memory, kRamdiskImage);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kRamdiskSize), initrd.size());
  EXPECT_EQ(zp<uint32_t>(vm.memory, kExtRamdiskImage), 0u);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kExtRamdiskSize), 0u);
  EXPECT_EQ(ramdisk % kPageSize, 0u);
  EXPECT_GE(ramdisk, 0x1000000u + spec.init_size);
  EXPECT_LE(ramdisk + initrd.size(), 64 * kMiB);
  EXPECT_GT(ramdisk + initrd.size(), 64 * kMiB - kPageSize);
  EXPECT_EQ(read_bytes(vm.memory, ramdisk, initrd.size()), initrd);

  // e820 in boot_params.
  const auto map = e820_map(vm.layout);
  ASSERT_EQ(zp<uint8_t>(vm.memory, kE820Entries), map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    EXPECT_EQ(zp<uint64_t>(vm.memory, kE820Table + i * 20), map[i].address);
    EXPECT_EQ(zp<uint64_t>(vm.memory, kE820Table + i * 20 + 8), map[i].size);
    EXPECT_EQ(zp<uint32_t>(vm.memory, kE820Table + i * 20 + 16), static_cast<uint32_t>(map[i].type));
  }
  EXPECT_EQ(zp<uint64_t>(vm.memory, kE820Table + 4 * 20), 0xb0000000u);

  // 64-bit entry state.
  EXPECT_EQ(setup->sregs.cs.selector, 0x10);
  EXPECT_TRUE(setup->sregs.cs.l);
  EXPECT_EQ(setup->sregs.ds.selector, 0x18);
  EXPECT_EQ(setup->sregs.efer & (x86::kEferLme | x86::kEferLma), x86::kEferLme | x86::kEferLma);
  EXPECT_TRUE(setup->sregs.cr0 & x86::kCr0Pg);
  EXPECT_TRUE(setup->sregs.cr4 & x86::kCr4Pae);
  EXPECT_EQ(setup->regs.rflags & x86::kRflagsIf, 0u);
  EXPECT_EQ(*vm.memory.read_obj<uint64_t>(GuestAddress(kBootGdtAddress + 0x10)), 0x00af9b000000ffffull);
  EXPECT_EQ(*vm.memory.read_obj<uint64_t>(GuestAddress(kBootPml4Address)) & ~0xfffull, kBootPdptAddress);
  EXPECT_NE(setup->description.find("2.15"), std::string::npos) << setup->description;
}

TEST(BzImage, PassesTheAcpiRsdpFromProtocol214) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_bzimage({});
  KernelImage image{file, {}, ""};
  image.acpi_rsdp = 0xe0000;
  ASSERT_TRUE(load_bzimage(vm.memory, vm.layout, image).ok());
  EXPECT_EQ(zp<uint64_t>(vm.memory, kAcpiRsdpAddr), 0xe0000u);
  BzImageSpec old;
  old.version = 0x020d;  // 2.13 does not read the field
  file = make_bzimage(old);
  image.kernel = file;
  ASSERT_TRUE(load_bzimage(vm.memory, vm.layout, image).ok());
  EXPECT_EQ(zp<uint64_t>(vm.memory, kAcpiRsdpAddr), 0u);
}

TEST(BzImage, InitrdStaysBelowInitrdAddrMax) {
  auto vm = make_test_vm(128 * kMiB);
  BzImageSpec spec;
  spec.initrd_addr_max = 0x3ffffff;  // 64 MiB - 1
  const auto file = make_bzimage(spec);
  const auto initrd = pattern(3, 5000);
  auto setup = load_bzimage(vm.memory, vm.layout, KernelImage{file, initrd, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  const uint32_t ramdisk = zp<uint32_t>(vm.memory, kRamdiskImage);
  EXPECT_LE(ramdisk + initrd.size(), 64 * kMiB);
  EXPECT_GT(ramdisk + initrd.size(), 64 * kMiB - kPageSize);
}

TEST(BzImage, NoInitrdLeavesRamdiskFieldsZero) {
  auto vm = make_test_vm(64 * kMiB);
  const auto file = make_bzimage({});
  ASSERT_TRUE(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}).ok());
  EXPECT_EQ(zp<uint32_t>(vm.memory, kRamdiskImage), 0u);
  EXPECT_EQ(zp<uint32_t>(vm.memory, kRamdiskSize), 0u);
  EXPECT_EQ(read_string(vm.memory, kCmdlineAddress), "");
}

TEST(BzImage, FallsBackToAnAlignedAddressFrom1MiBWhenPreferredDoesNotFit) {
  auto vm = make_test_vm(16 * kMiB);
  BzImageSpec spec;
  spec.pref_address = 0x1000000;  // == RAM size
  spec.init_size = 4 * kMiB;
  const auto file = make_bzimage(spec);
  auto setup = load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x200000u + 0x200);  // 1 MiB rounded up to kernel_alignment
  EXPECT_EQ(read_bytes(vm.memory, 0x200000, 16), pattern(kBzImagePayloadSeed, 16));
}

TEST(BzImage, NonRelocatableKernelLoadsAt1MiB) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.relocatable = false;
  const auto file = make_bzimage(spec);
  auto setup = load_bzimage(vm.memory, vm.layout, KernelImage{file, pattern(1, 100), ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x100200u);
  // The initrd stays clear of where the kernel will run (pref_address + init_size).
  EXPECT_GE(zp<uint32_t>(vm.memory, kRamdiskImage), 0x1000000u + spec.init_size);
}

TEST(BzImage, RejectsNonRelocatableKernelRunningBelow1MiB) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.relocatable = false;
  spec.pref_address = kZeroPageAddress;
  const auto file = make_bzimage(spec);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "below 1 MiB");
}

TEST(BzImage, SetupSectsZeroMeansFour) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.setup_sects = 0;
  const auto file = make_bzimage(spec);
  ASSERT_EQ(file.size(), 5 * 512 + spec.payload_size);
  ASSERT_TRUE(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}).ok());
  EXPECT_EQ(read_bytes(vm.memory, 0x1000000, 64), pattern(kBzImagePayloadSeed, 64));
}

TEST(BzImage, RejectsOldProtocol) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.version = 0x020b;
  const auto file = make_bzimage(spec);
  auto r = load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""});
  expect_error(r, "2.11");
  expect_error(r, "2.12");
  EXPECT_EQ(r.error().code(), ErrorCode::kUnsupported);
}

TEST(BzImage, RejectsKernelWithout64BitEntry) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.xloadflags = 0;
  const auto file = make_bzimage(spec);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "XLF_KERNEL_64");
}

TEST(BzImage, RejectsZImage) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.loadflags = 0;
  const auto file = make_bzimage(spec);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "zImage");
}

TEST(BzImage, RejectsSetupSectsBeyondTheFile) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_bzimage({});
  file[0x1f1] = 200;  // 100 KiB of setup in a 13 KiB file
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "truncated");
}

TEST(BzImage, RejectsTruncatedHeader) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_bzimage({});
  file.resize(0x240);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "shorter than its setup header");
}

TEST(BzImage, RejectsKernelThatDoesNotFitInRam) {
  auto vm = make_test_vm(16 * kMiB);
  BzImageSpec spec;
  spec.init_size = 0x7000000;  // 112 MiB
  const auto file = make_bzimage(spec);
  auto r = load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""});
  expect_error(r, "--memory");
  EXPECT_EQ(r.error().code(), ErrorCode::kOutOfRange);
}

TEST(BzImage, RejectsInitrdTooLargeForRam) {
  auto vm = make_test_vm(32 * kMiB);
  const auto file = make_bzimage({});
  const std::vector<uint8_t> initrd(20 * kMiB, 1);  // kernel takes 16 MiB + 8 MiB of init_size
  auto r = load_bzimage(vm.memory, vm.layout, KernelImage{file, initrd, ""});
  expect_error(r, "initrd of 20971520 bytes does not fit");
  expect_error(r, "--memory");
}

TEST(BzImage, RejectsCommandLineLongerThanTheKernelAccepts) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.cmdline_size = 10;
  const auto file = make_bzimage(spec);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, "console=ttyS0"}), "at most 10");
  EXPECT_TRUE(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, "0123456789"}).ok());
}

TEST(BzImage, RejectsBadKernelAlignment) {
  auto vm = make_test_vm(64 * kMiB);
  BzImageSpec spec;
  spec.kernel_alignment = 0x300000;
  const auto file = make_bzimage(spec);
  expect_error(load_bzimage(vm.memory, vm.layout, KernelImage{file, {}, ""}), "kernel_alignment");
}

}  // namespace
}  // namespace hostvisor::arch
