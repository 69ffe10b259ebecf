#include "arch/x86_64/test_images.h"

#include <stdexcept>

namespace hostvisor::arch::testing {

TestVm make_test_vm(uint64_t ram_size) {
  auto layout = memory_layout(ram_size);
  if (!layout.ok()) throw std::runtime_error(layout.error().message());
  auto memory = GuestMemory::create(layout->regions());
  if (!memory.ok()) throw std::runtime_error(memory.error().message());
  for (const auto& r : memory->regions())
    if (r.size <= 256 * kMiB) (void)memory->fill(r.start, 0xaa, r.size);
  return TestVm{*layout, std::move(memory).value()};
}

std::vector<uint8_t> pattern(uint64_t seed, uint64_t size) {
  std::vector<uint8_t> out(size);
  for (uint64_t i = 0; i < size; ++i) out[i] = pattern_byte(seed, i);
  return out;
}

std::vector<uint8_t> make_bzimage(const BzImageSpec& spec) {
  const uint64_t sects = spec.setup_sects == 0 ? 4 : spec.setup_sects;
  const uint64_t setup_size = (sects + 1) * 512;
  std::vector<uint8_t> f(setup_size, 0);
  put<uint8_t>(f, 0x1f1, spec.setup_sects);
  put<uint16_t>(f, 0x1fe, 0xaa55);
  put<uint8_t>(f, 0x200, 0xeb);           // jmp short
  put<uint8_t>(f, 0x201, 0x26c - 0x202);  // to the end of a 2.15 header
  put<uint32_t>(f, 0x202, 0x53726448);    // "HdrS"
  put<uint16_t>(f, 0x206, spec.version);
  put<uint8_t>(f, 0x210, 0);
  put<uint8_t>(f, 0x211, spec.loadflags);
  put<uint32_t>(f, 0x214, 0x100000);
  put<uint32_t>(f, 0x22c, spec.initrd_addr_max);
  put<uint32_t>(f, 0x230, spec.kernel_alignment);
  put<uint8_t>(f, 0x234, spec.relocatable ? 1 : 0);
  put<uint8_t>(f, 0x235, 21);
  put<uint16_t>(f, 0x236, spec.xloadflags);
  put<uint32_t>(f, 0x238, spec.cmdline_size);
  put<uint64_t>(f, 0x250, 0xdeadbeefcafe);  // junk setup_data the loader must clear
  put<uint64_t>(f, 0x258, spec.pref_address);
  put<uint32_t>(f, 0x260, spec.init_size);
  const auto payload = pattern(kBzImagePayloadSeed, spec.payload_size);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

static uint64_t align4(uint64_t v) { return (v + 3) & ~uint64_t{3}; }

static std::vector<uint8_t> encode_notes(const std::vector<ElfNoteSpec>& notes) {
  std::vector<uint8_t> out;
  for (const auto& n : notes) {
    const uint64_t at = out.size();
    put<uint32_t>(out, at, static_cast<uint32_t>(n.name.size() + 1));
    put<uint32_t>(out, at + 4, static_cast<uint32_t>(n.desc.size()));
    put<uint32_t>(out, at + 8, n.type);
    out.resize(at + 12 + align4(n.name.size() + 1), 0);
    std::memcpy(out.data() + at + 12, n.name.c_str(), n.name.size());
    const uint64_t desc_at = out.size();
    out.resize(desc_at + align4(n.desc.size()), 0);
    if (!n.desc.empty()) std::memcpy(out.data() + desc_at, n.desc.data(), n.desc.size());
  }
  return out;
}

uint64_t elf_after_headers_offset(const ElfSpec& spec) {
  const uint64_t ehdr = spec.is_64 ? 64 : 52;
  const uint64_t phdr = spec.is_64 ? 56 : 32;
  const uint64_t phnum = spec.segments.size() + (spec.notes.empty() ? 0 : 1);
  return ehdr + phnum * phdr;
}

std::vector<uint8_t> make_elf(const ElfSpec& spec) {
  const uint64_t phdr = spec.is_64 ? 56 : 32;
  const uint64_t phnum = spec.segments.size() + (spec.notes.empty() ? 0 : 1);
  std::vector<uint8_t> f(elf_after_headers_offset(spec), 0);
  f.insert(f.end(), spec.after_headers.begin(), spec.after_headers.end());
  const auto notes = encode_notes(spec.notes);
  const uint64_t notes_at = align4(f.size());
  f.resize(notes_at, 0);
  f.insert(f.end(), notes.begin(), notes.end());

  f[0] = 0x7f, f[1] = 'E', f[2] = 'L', f[3] = 'F';
  f[4] = spec.is_64 ? 2 : 1;
  f[5] = 1;  // little endian
  f[6] = 1;  // version
  put<uint16_t>(f, 16, spec.type);
  put<uint16_t>(f, 18, spec.machine);
  put<uint32_t>(f, 20, 1);
  const uint64_t phoff = spec.is_64 ? 64 : 52;
  if (spec.is_64) {
    put<uint64_t>(f, 24, spec.entry);
    put<uint64_t>(f, 32, phoff);
    put<uint16_t>(f, 52, 64);
    put<uint16_t>(f, 54, 56);
    put<uint16_t>(f, 56, static_cast<uint16_t>(phnum));
  } else {
    put<uint32_t>(f, 24, static_cast<uint32_t>(spec.entry));
    put<uint32_t>(f, 28, static_cast<uint32_t>(phoff));
    put<uint16_t>(f, 40, 52);
    put<uint16_t>(f, 42, 32);
    put<uint16_t>(f, 44, static_cast<uint16_t>(phnum));
  }
  auto write_phdr = [&](uint64_t index, uint32_t type, uint64_t offset, uint64_t vaddr, uint64_t paddr, uint64_t filesz,
                        uint64_t memsz, uint64_t align) {
    const uint64_t at = phoff + index * phdr;
    put<uint32_t>(f, at, type);
    if (spec.is_64) {
      put<uint32_t>(f, at + 4, 7);
      put<uint64_t>(f, at + 8, offset);
      put<uint64_t>(f, at + 16, vaddr);
      put<uint64_t>(f, at + 24, paddr);
      put<uint64_t>(f, at + 32, filesz);
      put<uint64_t>(f, at + 40, memsz);
      put<uint64_t>(f, at + 48, align);
    } else {
      put<uint32_t>(f, at + 4, static_cast<uint32_t>(offset));
      put<uint32_t>(f, at + 8, static_cast<uint32_t>(vaddr));
      put<uint32_t>(f, at + 12, static_cast<uint32_t>(paddr));
      put<uint32_t>(f, at + 16, static_cast<uint32_t>(filesz));
      put<uint32_t>(f, at + 20, static_cast<uint32_t>(memsz));
      put<uint32_t>(f, at + 24, 7);
      put<uint32_t>(f, at + 28, static_cast<uint32_t>(align));
    }
  };
  uint64_t index = 0;
  for (const auto& s : spec.segments) {
    const uint64_t offset = (f.size() + 15) & ~uint64_t{15};
    f.resize(offset, 0);
    const auto data = pattern(s.seed, s.file_size);
    f.insert(f.end(), data.begin(), data.end());
    write_phdr(index++, 1, offset, s.vaddr, s.paddr, s.file_size, s.mem_size, 0x1000);
  }
  if (!spec.notes.empty()) write_phdr(index++, 4, notes_at, 0, 0, notes.size(), notes.size(), 4);
  return f;
}

ElfNoteSpec pvh_note(uint64_t entry, size_t size) {
  ElfNoteSpec n;
  n.name = "Xen";
  n.type = 18;
  n.desc.resize(size);
  std::memcpy(n.desc.data(), &entry, size < 8 ? size : 8);
  return n;
}

std::vector<uint8_t> multiboot_header(uint32_t flags, const MultibootAout& aout) {
  std::vector<uint8_t> h;
  put<uint32_t>(h, 0, 0x1badb002);
  put<uint32_t>(h, 4, flags);
  put<uint32_t>(h, 8, static_cast<uint32_t>(0u - 0x1badb002u - flags));
  if (flags & (1u << 16)) {
    put<uint32_t>(h, 12, aout.header_addr);
    put<uint32_t>(h, 16, aout.load_addr);
    put<uint32_t>(h, 20, aout.load_end_addr);
    put<uint32_t>(h, 24, aout.bss_end_addr);
    put<uint32_t>(h, 28, aout.entry_addr);
  }
  return h;
}

MultibootAoutImage make_multiboot_aout(uint32_t load_addr, uint64_t size, uint32_t bss_size, uint32_t extra_flags) {
  MultibootAoutImage image;
  image.file = pattern(9, size);
  image.aout.header_addr = load_addr + 0x20;
  image.aout.load_addr = load_addr;
  image.aout.load_end_addr = static_cast<uint32_t>(load_addr + size);
  image.aout.bss_end_addr = bss_size ? static_cast<uint32_t>(load_addr + size + bss_size) : 0;
  image.aout.entry_addr = load_addr + 0x40;
  const auto header = multiboot_header((1u << 16) | extra_flags, image.aout);
  std::memcpy(image.file.data() + 0x20, header.data(), header.size());
  return image;
}

}  // namespace hostvisor::arch::testing
