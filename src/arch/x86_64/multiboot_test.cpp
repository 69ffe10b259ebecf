#include "arch/x86_64/multiboot.h"

#include <gtest/gtest.h>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using namespace testing;
using namespace multiboot;

std::vector<uint8_t> read_bytes(const GuestMemory& m, uint64_t address, uint64_t size) {
  std::vector<uint8_t> out(size);
  EXPECT_TRUE(m.read(GuestAddress(address), out).ok());
  return out;
}

std::string read_string(const GuestMemory& m, uint64_t address) {
  std::string s;
  while (char c = static_cast<char>(*m.read_obj<uint8_t>(GuestAddress(address + s.size())))) s.push_back(c);
  return s;
}

void expect_error(const Result<BootSetup>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(Multiboot, AoutKludgeImageWithModuleAndFullInfo) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x2000, 0x1800, kHeaderPageAlignModules | kHeaderMemoryInfo);
  const auto initrd = pattern(6, 5000);
  auto setup = load_multiboot(vm.memory, vm.layout, KernelImage{image.file, initrd, "console=ttyS0 debug"});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kMultiboot);

  EXPECT_EQ(read_bytes(vm.memory, 0x100000, 0x2000), image.file);
  EXPECT_EQ(read_bytes(vm.memory, 0x102000, 0x1800), std::vector<uint8_t>(0x1800, 0));  // bss

  // CPU: flat 32-bit protected mode, magic in EAX, info in EBX.
  EXPECT_EQ(setup->regs.rax, 0x2badb002u);
  EXPECT_EQ(setup->regs.rbx, kMultibootInfoAddress);
  EXPECT_EQ(setup->regs.rip, 0x100040u);
  EXPECT_TRUE(setup->sregs.cr0 & x86::kCr0Pe);
  EXPECT_FALSE(setup->sregs.cr0 & x86::kCr0Pg);
  EXPECT_TRUE(setup->sregs.cs.db);
  EXPECT_FALSE(setup->sregs.cs.l);
  EXPECT_EQ(setup->sregs.cs.type, 0xb);
  for (const Segment* s : {&setup->sregs.ds, &setup->sregs.es, &setup->sregs.fs, &setup->sregs.gs, &setup->sregs.ss}) {
    EXPECT_EQ(s->base, 0u);
    EXPECT_EQ(s->limit, 0xffffffffu);
    EXPECT_EQ(s->type, 0x3);
  }
  EXPECT_EQ(setup->regs.rflags & x86::kRflagsIf, 0u);

  const auto info = *vm.memory.read_obj<Info>(GuestAddress(kMultibootInfoAddress));
  EXPECT_EQ(info.flags, kInfoMemory | kInfoCmdline | kInfoModules | kInfoMemoryMap | kInfoBootLoaderName);
  EXPECT_EQ(info.mem_lower, 639u);
  EXPECT_EQ(info.mem_upper, 63u * 1024);
  EXPECT_EQ(read_string(vm.memory, info.cmdline), "console=ttyS0 debug");
  EXPECT_EQ(read_string(vm.memory, info.boot_loader_name), "hostvisor");

  ASSERT_EQ(info.mods_count, 1u);
  const auto module = *vm.memory.read_obj<Module>(GuestAddress(info.mods_addr));
  EXPECT_EQ(module.mod_start, 0x104000u);  // first page after the bss
  EXPECT_EQ(module.mod_end - module.mod_start, initrd.size());
  EXPECT_EQ(read_string(vm.memory, module.string), "initrd");
  EXPECT_EQ(read_bytes(vm.memory, module.mod_start, initrd.size()), initrd);

  const auto map = e820_map(vm.layout);
  ASSERT_EQ(info.mmap_length, map.size() * 24);
  for (size_t i = 0; i < map.size(); ++i) {
    // The size field comes first and counts the 20 bytes after it.
    const auto e = *vm.memory.read_obj<MmapEntry>(GuestAddress(info.mmap_addr + i * 24));
    EXPECT_EQ(e.size, 20u);
    EXPECT_EQ(e.base_addr, map[i].address);
    EXPECT_EQ(e.length, map[i].size);
    EXPECT_EQ(e.type, static_cast<uint32_t>(map[i].type));
  }
}

// As GRUB's `multiboot /boot/kernel ARGS` / `module /boot/initrd` and
// QEMU's -kernel/-initrd: the command line starts with the kernel's name,
// and the module's string is the initrd's name.
TEST(Multiboot, CommandLineStartsWithTheKernelsNameAndTheModuleStringIsTheInitrdsName) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x2000, 0x1800, kHeaderPageAlignModules);
  const auto initrd = pattern(6, 100);
  KernelImage kernel{image.file, initrd, "console=ttyS0 debug"};
  kernel.kernel_name = "/boot/kernel.elf";
  kernel.initrd_name = "/boot/tests.img";
  ASSERT_TRUE(load_multiboot(vm.memory, vm.layout, kernel).ok());
  const auto info = *vm.memory.read_obj<Info>(GuestAddress(kMultibootInfoAddress));
  EXPECT_EQ(read_string(vm.memory, info.cmdline), "/boot/kernel.elf console=ttyS0 debug");
  const auto module = *vm.memory.read_obj<Module>(GuestAddress(info.mods_addr));
  EXPECT_EQ(read_string(vm.memory, module.string), "/boot/tests.img");

  // With no --append the command line is the name alone.
  kernel.cmdline.clear();
  ASSERT_TRUE(load_multiboot(vm.memory, vm.layout, kernel).ok());
  EXPECT_EQ(read_string(vm.memory, vm.memory.read_obj<Info>(GuestAddress(kMultibootInfoAddress))->cmdline),
            "/boot/kernel.elf");
}

TEST(Multiboot, LoadEndZeroMeansTheRestOfTheFile) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x200000, 0x1000, 0);
  image.aout.load_end_addr = 0;
  const auto header = multiboot_header(1u << 16, image.aout);
  std::copy(header.begin(), header.end(), image.file.begin() + 0x20);
  auto setup = load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(read_bytes(vm.memory, 0x200000, 0x1000), image.file);
  const auto info = *vm.memory.read_obj<Info>(GuestAddress(kMultibootInfoAddress));
  EXPECT_EQ(info.flags & kInfoModules, 0u);
  EXPECT_EQ(read_string(vm.memory, info.cmdline), "");
}

TEST(Multiboot, Elf32ImageLoadsByProgramHeaders) {
  auto vm = make_test_vm(64 * kMiB);
  ElfSpec spec;
  spec.is_64 = false;
  spec.machine = 3;
  spec.entry = 0xc0100010;  // a higher-half kernel: entry translated to its physical address
  spec.segments = {{0x100000, 0xc0100000, 0x800, 0x1000, 3}};
  spec.after_headers = multiboot_header(kHeaderPageAlignModules | kHeaderMemoryInfo);
  const auto file = make_elf(spec);
  auto setup = load_multiboot(vm.memory, vm.layout, KernelImage{file, pattern(8, 100), "x"});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x100010u);
  EXPECT_EQ(read_bytes(vm.memory, 0x100000, 0x800), pattern(3, 0x800));
  EXPECT_EQ(read_bytes(vm.memory, 0x100800, 0x800), std::vector<uint8_t>(0x800, 0));
  const auto module = *vm.memory.read_obj<Module>(GuestAddress(kModulesAddress));
  EXPECT_EQ(module.mod_start, 0x101000u);
  EXPECT_EQ(module.mod_end, 0x101000u + 100);
}

TEST(Multiboot, VideoModeRequestIsOptional) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x1000, 0, kHeaderVideoMode);
  auto setup = load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_NE(setup->description.find("text mode"), std::string::npos);
}

TEST(Multiboot, RejectsBadChecksum) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x1000, 0);
  image.file[0x28] ^= 1;  // checksum
  auto r = load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""});
  expect_error(r, "bad checksum");
  expect_error(r, "offset 0x20");
}

TEST(Multiboot, RejectsUnknownRequiredFlags) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x1000, 0, 1u << 3);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}), "flag bits 0x8");
  // Unknown optional bits (16-31) are fine.
  image = make_multiboot_aout(0x100000, 0x1000, 0, 1u << 20);
  EXPECT_TRUE(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}).ok());
}

TEST(Multiboot, RejectsInconsistentAoutAddresses) {
  auto vm = make_test_vm(64 * kMiB);
  auto check = [&](auto mutate, const std::string& needle) {
    auto image = make_multiboot_aout(0x100000, 0x1000, 0x100);
    mutate(image.aout);
    const auto header = multiboot_header(1u << 16, image.aout);
    std::copy(header.begin(), header.end(), image.file.begin() + 0x20);
    expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}), needle);
  };
  check([](MultibootAout& a) { a.load_addr = a.header_addr + 4; }, "above header_addr");
  check([](MultibootAout& a) { a.load_addr = a.header_addr - 0x1000; }, "before the beginning of the file");
  check([](MultibootAout& a) { a.load_end_addr += 0x1000; }, "truncated");
  check([](MultibootAout& a) { a.load_end_addr = a.load_addr - 1; }, "below load_addr");
  check([](MultibootAout& a) { a.bss_end_addr = a.load_addr + 0x10; }, "bss_end_addr");
  check([](MultibootAout& a) { a.entry_addr = 0x500000; }, "entry_addr 0x500000 is outside");
}

TEST(Multiboot, RejectsImageOutsideRamOrOverBootStructures) {
  auto vm = make_test_vm(64 * kMiB);
  auto image = make_multiboot_aout(0x8000000, 0x1000, 0);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}), "not inside usable guest RAM");
  image = make_multiboot_aout(0x8000, 0x1000, 0);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}), "boot structures");
  image = make_multiboot_aout(0xffff0000, 0x1000, 0x1000);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, {}, ""}), "not inside usable guest RAM");
}

TEST(Multiboot, RejectsInitrdTooLargeForRam) {
  auto vm = make_test_vm(4 * kMiB);
  auto image = make_multiboot_aout(0x100000, 0x1000, 0);
  const std::vector<uint8_t> initrd(4 * kMiB, 0);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{image.file, initrd, ""}), "initrd of 4194304 bytes");
}

TEST(Multiboot, RejectsElfThatIsNotElf32) {
  auto vm = make_test_vm(64 * kMiB);
  ElfSpec spec;
  spec.entry = 0x100000;
  spec.segments = {{0x100000, 0x100000, 0x100, 0x100, 1}};
  spec.after_headers = multiboot_header(0);
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "ELF32 images only");
  std::vector<uint8_t> not_elf(0x100, 0);
  const auto header = multiboot_header(0);
  std::copy(header.begin(), header.end(), not_elf.begin());
  expect_error(load_multiboot(vm.memory, vm.layout, KernelImage{not_elf, {}, ""}), "must be an ELF32");
}

TEST(Multiboot, HeaderMustBeInTheFirst8KiBAndAligned) {
  std::vector<uint8_t> file(0x3000, 0);
  const auto header = multiboot_header(0);
  std::copy(header.begin(), header.end(), file.begin() + 0x2000);
  EXPECT_FALSE(find_multiboot_header(file).has_value());
  std::copy(header.begin(), header.end(), file.begin() + 0x1ff4);  // last slot that fits
  ASSERT_TRUE(find_multiboot_header(file).has_value());
  EXPECT_EQ(find_multiboot_header(file)->offset, 0x1ff4u);
  std::vector<uint8_t> unaligned(0x100, 0);
  std::copy(header.begin(), header.end(), unaligned.begin() + 2);
  EXPECT_FALSE(find_multiboot_header(unaligned).has_value());
}

}  // namespace
}  // namespace hostvisor::arch
