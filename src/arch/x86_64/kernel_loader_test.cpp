#include "arch/x86_64/kernel_loader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <random>

#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using namespace testing;

constexpr char kNotAKernel[] =
    "not a kernel hostvisor can boot: expected a Linux bzImage, an ELF64 image (with or without a PVH note) or a "
    "multiboot v1 image";

ElfSpec small_elf64() {
  ElfSpec spec;
  spec.entry = 0x100000;
  spec.segments = {{0x100000, 0x100000, 0x100, 0x100, 1}};
  return spec;
}

TEST(KernelLoader, DetectsEachFormat) {
  EXPECT_EQ(detect_kernel_format(make_bzimage({})), KernelFormat::kLinuxBzImage);
  EXPECT_EQ(detect_kernel_format(make_elf(small_elf64())), KernelFormat::kElf64);
  auto pvh = small_elf64();
  pvh.notes = {pvh_note(0x100000)};
  EXPECT_EQ(detect_kernel_format(make_elf(pvh)), KernelFormat::kElf64);
  EXPECT_EQ(detect_kernel_format(make_multiboot_aout(0x100000, 0x1000, 0).file), KernelFormat::kMultiboot);
  ElfSpec elf32 = small_elf64();
  elf32.is_64 = false;
  elf32.machine = 3;
  elf32.after_headers = multiboot_header(0);
  EXPECT_EQ(detect_kernel_format(make_elf(elf32)), KernelFormat::kMultiboot);
}

TEST(KernelLoader, BzImageWinsOverAnEmbeddedMultibootHeader) {
  auto file = make_bzimage({});
  const auto header = multiboot_header(0);
  std::copy(header.begin(), header.end(), file.begin() + 0x400);
  EXPECT_EQ(detect_kernel_format(file), KernelFormat::kLinuxBzImage);
}

TEST(KernelLoader, Elf64WithMultibootHeaderButNoAoutKludgeIsElf64) {
  auto spec = small_elf64();
  spec.after_headers = multiboot_header(0);
  EXPECT_EQ(detect_kernel_format(make_elf(spec)), KernelFormat::kElf64);
  spec.after_headers = multiboot_header(1u << 16);
  EXPECT_EQ(detect_kernel_format(make_elf(spec)), KernelFormat::kMultiboot);
}

TEST(KernelLoader, DispatchesToTheDetectedLoader) {
  auto vm = make_test_vm(64 * kMiB);
  auto pvh = small_elf64();
  pvh.notes = {pvh_note(0x100000)};
  const auto pvh_file = make_elf(pvh);
  auto setup = load_kernel(vm.memory, vm.layout, KernelImage{pvh_file, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kPvh);
  EXPECT_STREQ(kernel_format_name(setup->format), "PVH ELF64");

  const auto bz = make_bzimage({});
  setup = load_kernel(vm.memory, vm.layout, KernelImage{bz, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->format, KernelFormat::kLinuxBzImage);

  const auto mb = make_multiboot_aout(0x100000, 0x1000, 0).file;
  setup = load_kernel(vm.memory, vm.layout, KernelImage{mb, {}, ""});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  EXPECT_EQ(setup->regs.rax, 0x2badb002u);
}

TEST(KernelLoader, EmptyFileIsNotAKernel) {
  auto vm = make_test_vm(16 * kMiB);
  auto r = load_kernel(vm.memory, vm.layout, KernelImage{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message().rfind(kNotAKernel, 0), 0u) << r.error().message();
  EXPECT_NE(r.error().message().find("empty"), std::string::npos);
  EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
  EXPECT_EQ(r.error().with_context("vmlinux").message().rfind("vmlinux: not a kernel", 0), 0u);
}

TEST(KernelLoader, RandomBytesAreNotAKernel) {
  auto vm = make_test_vm(16 * kMiB);
  std::mt19937_64 rng(42);
  for (size_t size : {size_t{1}, size_t{511}, size_t{4096}, size_t{70000}}) {
    std::vector<uint8_t> file(size);
    for (auto& b : file) b = static_cast<uint8_t>(rng());
    auto r = load_kernel(vm.memory, vm.layout, KernelImage{file, {}, ""});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message().rfind(kNotAKernel, 0), 0u) << r.error().message();
  }
}

TEST(KernelLoader, ExplainsBadMultibootChecksumAndElf32WithoutHeader) {
  auto vm = make_test_vm(16 * kMiB);
  auto mb = make_multiboot_aout(0x100000, 0x1000, 0).file;
  mb[0x28] ^= 0x80;
  auto r = load_kernel(vm.memory, vm.layout, KernelImage{mb, {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("bad checksum"), std::string::npos) << r.error().message();

  ElfSpec elf32 = small_elf64();
  elf32.is_64 = false;
  elf32.machine = 3;
  r = load_kernel(vm.memory, vm.layout, KernelImage{make_elf(elf32), {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("ELF32 file without a multiboot header"), std::string::npos);
}

// The fuzz seeds written by make_fuzz_seeds.py must be images the loaders
// accept, or the fuzzers would start from inputs the header checks reject.
// The inputs a campaign added (`make fuzz` with FUZZ_UPDATE_CORPUS, named
// by their SHA-1 as libFuzzer names them) are left out: they are kept for
// the rejection paths they reach.
TEST(KernelLoader, FuzzSeedsAreBootableImages) {
  const std::filesystem::path corpus = HV_FUZZ_CORPUS_DIR;
  const std::regex grown("[0-9a-f]{40}");
  int seeds = 0;
  for (const char* target : {"load_bzimage", "load_elf", "load_multiboot"}) {
    ASSERT_TRUE(std::filesystem::is_directory(corpus / target)) << corpus / target;
    for (const auto& entry : std::filesystem::directory_iterator(corpus / target)) {
      if (std::regex_match(entry.path().filename().string(), grown)) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::vector<uint8_t> file{std::istreambuf_iterator<char>(in), {}};
      EXPECT_LT(file.size(), 64 * 1024u) << entry.path();
      auto vm = make_test_vm(32 * kMiB);
      const std::vector<uint8_t> initrd(4097, 0x5a);
      auto setup = load_kernel(vm.memory, vm.layout, KernelImage{file, initrd, "console=ttyS0"});
      EXPECT_TRUE(setup.ok()) << entry.path() << ": " << setup.error().message();
      ++seeds;
    }
  }
  EXPECT_GE(seeds, 9);
}

}  // namespace
}  // namespace hostvisor::arch
