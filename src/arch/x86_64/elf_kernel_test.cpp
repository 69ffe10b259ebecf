#include "arch/x86_64/elf_kernel.h"

#include <gtest/gtest.h>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/elf_reader.h"
#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using namespace testing;

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

ElfSpec two_segment_kernel() {
  ElfSpec spec;
  spec.entry = 0x200010;
  spec.segments = {{0x200000, 0x200000, 0x1800, 0x3000, 1}, {0x400000, 0xffffffff80400000ull, 0x100, 0x100, 2}};
  return spec;
}

void expect_error(const Result<BootSetup>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(Elf64Kernel, LoadsSegmentsZeroesBssAndEntersLongMode) {
  auto vm = make_test_vm(64 * kMiB);
  const auto file = make_elf(two_segment_kernel());
  auto setup = load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, "quiet"});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kElf64);
  EXPECT_EQ(read_bytes(vm.memory, 0x200000, 0x1800), pattern(1, 0x1800));
  EXPECT_EQ(read_bytes(vm.memory, 0x201800, 0x1800), std::vector<uint8_t>(0x1800, 0));  // bss
  EXPECT_EQ(*vm.memory.read_obj<uint8_t>(GuestAddress(0x203000)), 0xaa);                // untouched past memsz
  EXPECT_EQ(read_bytes(vm.memory, 0x400000, 0x100), pattern(2, 0x100));
  EXPECT_EQ(setup->regs.rip, 0x200010u);
  EXPECT_EQ(setup->regs.rsi, 0u);
  EXPECT_EQ(setup->regs.rdi, 0u);
  EXPECT_TRUE(setup->sregs.cs.l);
  EXPECT_EQ(setup->sregs.cs.selector, kBootCode64Selector);
  EXPECT_EQ(setup->sregs.cr3, kBootPml4Address);
  EXPECT_EQ(setup->sregs.efer & x86::kEferLma, x86::kEferLma);
  // Identity map present: PD entry for 2 MiB maps 2 MiB.
  EXPECT_EQ(*vm.memory.read_obj<uint64_t>(GuestAddress(kBootPdAddress + 8)),
            0x200000u | kPtePresent | kPteWritable | kPteLargePage);
  EXPECT_EQ(read_string(vm.memory, kCmdlineAddress), "quiet");
}

TEST(Elf64Kernel, VirtualEntryIsTranslatedToItsPhysicalAddress) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.entry = 0xffffffff80400010ull;
  const auto file = make_elf(spec);
  auto setup = load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x400010u);
}

TEST(PvhKernel, BootsIn32BitModeWithStartInfo) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.notes = {ElfNoteSpec{"GNU", 3, {1, 2, 3, 4}}, pvh_note(0x200020)};
  const auto file = make_elf(spec);
  const auto initrd = pattern(4, 10000);
  auto setup = load_elf_kernel(vm.memory, vm.layout, KernelImage{file, initrd, "console=hvc0"});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kPvh);
  EXPECT_EQ(setup->regs.rip, 0x200020u);
  EXPECT_EQ(setup->regs.rbx, kPvhStartInfoAddress);
  EXPECT_TRUE(setup->sregs.cr0 & x86::kCr0Pe);
  EXPECT_FALSE(setup->sregs.cr0 & x86::kCr0Pg);
  EXPECT_EQ(setup->sregs.efer, 0u);
  EXPECT_TRUE(setup->sregs.cs.db);
  EXPECT_FALSE(setup->sregs.cs.l);
  EXPECT_EQ(setup->sregs.cs.base, 0u);
  EXPECT_EQ(setup->sregs.cs.limit, 0xffffffffu);
  EXPECT_EQ(setup->sregs.ds.limit, 0xffffffffu);
  EXPECT_EQ(setup->sregs.tr.limit, 0x67u);
  EXPECT_EQ(setup->regs.rflags & x86::kRflagsIf, 0u);

  auto info = *vm.memory.read_obj<HvmStartInfo>(GuestAddress(kPvhStartInfoAddress));
  EXPECT_EQ(info.magic, 0x336ec578u);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(read_string(vm.memory, info.cmdline_paddr), "console=hvc0");
  EXPECT_EQ(info.rsdp_paddr, 0u);
  ASSERT_EQ(info.nr_modules, 1u);
  auto module = *vm.memory.read_obj<HvmModlistEntry>(GuestAddress(info.modlist_paddr));
  EXPECT_EQ(module.size, initrd.size());
  EXPECT_EQ(module.paddr % kPageSize, 0u);
  EXPECT_GE(module.paddr, 0x400100u);
  EXPECT_EQ(read_bytes(vm.memory, module.paddr, initrd.size()), initrd);

  const auto map = e820_map(vm.layout);
  ASSERT_EQ(info.memmap_entries, map.size());
  for (size_t i = 0; i < map.size(); ++i) {
    auto e = *vm.memory.read_obj<HvmMemmapTableEntry>(GuestAddress(info.memmap_paddr + i * 24));
    EXPECT_EQ(e.addr, map[i].address);
    EXPECT_EQ(e.size, map[i].size);
    EXPECT_EQ(e.type, static_cast<uint32_t>(map[i].type));
    EXPECT_EQ(e.reserved, 0u);
  }
  // The flat 32-bit code descriptor the CS cache describes is in the GDT.
  EXPECT_EQ(*vm.memory.read_obj<uint64_t>(GuestAddress(kBootGdtAddress + kBootCode32Selector)), 0x00cf9b000000ffffull);
}

TEST(PvhKernel, AcceptsAn8ByteEntryNoteAndNoInitrd) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.notes = {pvh_note(0x400004, 8)};
  const auto file = make_elf(spec);
  KernelImage image{file, {}, ""};
  image.acpi_rsdp = 0xe0000;
  auto setup = load_elf_kernel(vm.memory, vm.layout, image);
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x400004u);
  auto info = *vm.memory.read_obj<HvmStartInfo>(GuestAddress(kPvhStartInfoAddress));
  EXPECT_EQ(info.nr_modules, 0u);
  EXPECT_EQ(info.modlist_paddr, 0u);
  EXPECT_EQ(info.rsdp_paddr, 0xe0000u);
}

TEST(PvhKernel, RejectsEntryOutsideTheImage) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.notes = {pvh_note(0x900000)};
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "PVH entry point 0x900000");
  spec.notes = {pvh_note(0x100000000ull, 8)};
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "above 4 GiB");
  spec.notes = {pvh_note(0x200000, 2)};
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "2-byte value");
}

TEST(Elf64Kernel, RejectsProgramHeadersBeyondTheFile) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_elf(two_segment_kernel());
  put<uint64_t>(file, 32, file.size() - 8);  // e_phoff
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "run past the end");
  put<uint64_t>(file, 32, UINT64_MAX - 8);
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "run past the end");
}

TEST(Elf64Kernel, RejectsAbsurdProgramHeaderCount) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_elf(two_segment_kernel());
  put<uint16_t>(file, 56, 60000);
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "60000 program headers");
  put<uint16_t>(file, 56, 0);
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "no program headers");
}

TEST(Elf64Kernel, ProgramHeaderSizeIsTheStride) {
  auto vm = make_test_vm(64 * kMiB);
  auto file = make_elf(two_segment_kernel());
  put<uint16_t>(file, 54, 40);  // smaller than an Elf64_Phdr
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "program header size 40");
  // One 64-byte entry: the first segment's header, padded; the rest of the file is data.
  file = make_elf(two_segment_kernel());
  put<uint16_t>(file, 54, 64);
  put<uint16_t>(file, 56, 1);
  auto setup = load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rip, 0x200010u);
}

TEST(Elf64Kernel, RejectsSegmentOutsideRam) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.segments[1].paddr = 0x10000000;  // 256 MiB in a 64 MiB guest
  auto r = load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""});
  expect_error(r, "[0x10000000, 0x10000100) is not inside usable guest RAM");
  EXPECT_EQ(r.error().code(), ErrorCode::kOutOfRange);
}

TEST(Elf64Kernel, RejectsSegmentOverTheBootStructures) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.segments[1].paddr = kZeroPageAddress;
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "boot structures");
}

TEST(Elf64Kernel, RejectsMalformedSegments) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.segments[0].file_size = 0x4000;  // > memsz
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "exceeds memory size");
  auto file = make_elf(two_segment_kernel());
  file.resize(file.size() - 0x10);  // second segment's data cut short
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""}), "truncated");
  spec = two_segment_kernel();
  spec.segments[1].paddr = UINT64_MAX - 0x10;
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "wraps");
}

TEST(Elf64Kernel, RejectsWrongKindsOfElf) {
  auto vm = make_test_vm(64 * kMiB);
  auto spec = two_segment_kernel();
  spec.machine = 183;  // aarch64
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "not x86-64");
  spec = two_segment_kernel();
  spec.type = 3;  // ET_DYN
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "ET_EXEC");
  spec = two_segment_kernel();
  spec.is_64 = false;
  spec.machine = 3;
  spec.segments[1].vaddr = 0x400000;
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "ELF32");
  spec = two_segment_kernel();
  spec.entry = 0x900000;
  expect_error(load_elf_kernel(vm.memory, vm.layout, KernelImage{make_elf(spec), {}, ""}), "not inside any");
}

TEST(Elf64Kernel, RejectsTruncatedHeaders) {
  auto vm = make_test_vm(64 * kMiB);
  const auto full = make_elf(two_segment_kernel());
  for (size_t size : {size_t{4}, size_t{15}, size_t{40}, size_t{63}, size_t{100}}) {
    std::vector<uint8_t> file(full.begin(), full.begin() + static_cast<long>(size));
    auto r = load_elf_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""});
    ASSERT_FALSE(r.ok()) << size;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << size;
  }
}

}  // namespace
}  // namespace hostvisor::arch
