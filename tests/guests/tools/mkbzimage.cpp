// mkbzimage: wraps a test kernel into a Linux bzImage (boot protocol 2.15).
//
//   mkbzimage --setup SETUP.bin --kernel KERNEL.elf --output bzImage
//
// SETUP.bin is the real-mode setup code (boot/bzimage_setup.S as a flat
// binary; offsets 0x1F1-0x26F must be left zero apart from the 2-byte jump at
// 0x200). KERNEL.elf is the kernel linked at its load address; its PT_LOAD
// segments are laid out flat into the protected-mode part, so the lowest
// segment address becomes pref_address/code32_start, and init_size covers the
// highest p_memsz (the .bss).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// Setup header field offsets (Documentation/arch/x86/boot.rst).
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kSyssize = 0x1f4;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kJump = 0x200;
constexpr size_t kHeader = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kTypeOfLoader = 0x210;
constexpr size_t kLoadflags = 0x211;
constexpr size_t kCode32Start = 0x214;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatableKernel = 0x234;
constexpr size_t kMinAlignment = 0x235;
constexpr size_t kXloadflags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
constexpr size_t kHeaderEnd = 0x270;

constexpr uint16_t kProtocol = 0x020f;  // 2.15
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;  // a 64-bit entry at code32_start + 0x200
constexpr uint32_t kCmdlineMax = 4095;
constexpr uint32_t kInitrdMax = 0x37ffffff;
constexpr uint64_t kMaxImage = 64ull << 20;  // far more than any test kernel needs

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "mkbzimage: %s\n", message.c_str());
  std::exit(1);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot open " + path);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
T load(const Bytes& b, uint64_t offset, const char* what) {
  if (offset > b.size() || b.size() - offset < sizeof(T)) die(std::string("ELF truncated at ") + what);
  T value;
  std::memcpy(&value, b.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void store(Bytes& b, size_t offset, T value) {
  std::memcpy(b.data() + offset, &value, sizeof(T));
}

struct FlatKernel {
  uint64_t base = 0;       // load address of the first byte
  Bytes image;             // file-backed bytes, flat from base
  uint64_t memory_size{};  // bytes needed from base, including .bss
};

// Lays the PT_LOAD segments of an ELF64 x86-64 file out flat.
FlatKernel flatten_elf(const Bytes& elf) {
  if (elf.size() < 64 || std::memcmp(elf.data(),
                                     "\x7f"
                                     "ELF",
                                     4) != 0)
    die("kernel is not an ELF file");
  if (elf[4] != 2 || elf[5] != 1) die("kernel is not a little-endian ELF64 file");
  if (load<uint16_t>(elf, 18, "e_machine") != 62) die("kernel is not an x86-64 ELF file");
  auto phoff = load<uint64_t>(elf, 32, "e_phoff");
  auto phentsize = load<uint16_t>(elf, 54, "e_phentsize");
  auto phnum = load<uint16_t>(elf, 56, "e_phnum");
  if (phentsize < 56) die("ELF program header entries are too small");
  if (phoff > elf.size()) die("ELF program headers beyond the end of the file");

  struct Segment {
    uint64_t offset, paddr, filesz, memsz;
  };
  std::vector<Segment> segments;
  std::optional<uint64_t> low, high;
  for (uint16_t i = 0; i < phnum; i++) {
    uint64_t ph = phoff + uint64_t{i} * phentsize;
    if (load<uint32_t>(elf, ph, "p_type") != 1) continue;  // PT_LOAD
    Segment s{load<uint64_t>(elf, ph + 8, "p_offset"), load<uint64_t>(elf, ph + 24, "p_paddr"),
              load<uint64_t>(elf, ph + 32, "p_filesz"), load<uint64_t>(elf, ph + 40, "p_memsz")};
    if (s.filesz > s.memsz || s.memsz > kMaxImage || s.paddr > UINT32_MAX) die("ELF segment out of range");
    if (s.offset > elf.size() || elf.size() - s.offset < s.filesz) die("ELF segment beyond the end of the file");
    segments.push_back(s);
    low = std::min(low.value_or(s.paddr), s.paddr);
    high = std::max(high.value_or(0), s.paddr + s.memsz);
  }
  if (segments.empty()) die("kernel has no PT_LOAD segment");
  FlatKernel flat;
  flat.base = *low;
  flat.memory_size = *high - *low;
  if (flat.memory_size > kMaxImage) die("kernel spans more than 64 MiB");
  for (const Segment& s : segments) {
    uint64_t end = s.paddr - flat.base + s.filesz;
    if (end > flat.image.size()) flat.image.resize(end, 0);
    std::memcpy(flat.image.data() + (s.paddr - flat.base), elf.data() + s.offset, s.filesz);
  }
  return flat;
}

}  // namespace

int main(int argc, char** argv) {
  std::string setup_path, kernel_path, output_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--setup")
      setup_path = argv[i + 1];
    else if (flag == "--kernel")
      kernel_path = argv[i + 1];
    else if (flag == "--output")
      output_path = argv[i + 1];
    else
      die("unknown option " + flag);
  }
  if (setup_path.empty() || kernel_path.empty() || output_path.empty() || argc % 2 == 0)
    die("usage: mkbzimage --setup SETUP.bin --kernel KERNEL.elf --output bzImage");

  Bytes setup = read_file(setup_path);
  if (setup.size() < kHeaderEnd) die("setup code is shorter than the setup header");
  for (size_t off = kSetupSects; off < kHeaderEnd; off++) {
    if ((off == kJump || off == kJump + 1)) continue;
    if (setup[off] != 0) die("setup code overlaps the setup header at offset " + std::to_string(off));
  }
  if (setup[kJump] != 0xeb) die("setup code must start its header with a 2-byte short jump at 0x200");
  // setup_sects counts the 512-byte sectors after the boot sector; 0 would mean 4.
  size_t sectors = (setup.size() + 511) / 512;
  if (sectors < 2) sectors = 2;
  if (sectors - 1 > 0xff) die("setup code is too large");
  setup.resize(sectors * 512, 0);

  FlatKernel kernel = flatten_elf(read_file(kernel_path));
  if (kernel.base < 0x100000) die("kernel must be linked at or above 1 MiB");
  uint64_t init_size = (kernel.memory_size + 4095) & ~uint64_t{4095};

  store<uint8_t>(setup, kSetupSects, static_cast<uint8_t>(sectors - 1));
  store<uint32_t>(setup, kSyssize, static_cast<uint32_t>((kernel.image.size() + 15) / 16));
  store<uint16_t>(setup, kBootFlag, 0xaa55);
  std::memcpy(setup.data() + kHeader, "HdrS", 4);
  store<uint16_t>(setup, kVersion, kProtocol);
  store<uint8_t>(setup, kTypeOfLoader, 0);
  store<uint8_t>(setup, kLoadflags, kLoadedHigh);
  store<uint32_t>(setup, kCode32Start, static_cast<uint32_t>(kernel.base));
  store<uint32_t>(setup, kInitrdAddrMax, kInitrdMax);
  store<uint32_t>(setup, kKernelAlignment, 0x1000);
  store<uint8_t>(setup, kRelocatableKernel, 0);
  store<uint8_t>(setup, kMinAlignment, 12);
  store<uint16_t>(setup, kXloadflags, kXlfKernel64);
  store<uint32_t>(setup, kCmdlineSize, kCmdlineMax);
  store<uint64_t>(setup, kPrefAddress, kernel.base);
  store<uint32_t>(setup, kInitSize, static_cast<uint32_t>(init_size));

  std::ofstream out(output_path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(setup.data()), static_cast<std::streamsize>(setup.size()));
  out.write(reinterpret_cast<const char*>(kernel.image.data()), static_cast<std::streamsize>(kernel.image.size()));
  if (!out.flush()) die("cannot write " + output_path);
  return 0;
}
