// Tiny kernel images built in memory for the loader tests: just enough of
// each format (headers by the specs, a recognisable payload) to check where
// every byte lands.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch::testing {

// A guest with ram_size bytes laid out as the machine would, RAM pre-filled
// with 0xAA so zeroed bss and untouched bytes can be told apart.
struct TestVm {
  MemoryLayout layout;
  GuestMemory memory;
};
TestVm make_test_vm(uint64_t ram_size);

// The payload byte at offset i of a segment: a pattern that differs from
// zero and from its neighbours, so misplaced copies show.
inline uint8_t pattern_byte(uint64_t seed, uint64_t i) { return static_cast<uint8_t>((i * 7 + seed * 13 + 1) | 1); }
std::vector<uint8_t> pattern(uint64_t seed, uint64_t size);

template <typename T>
void put(std::vector<uint8_t>& b, uint64_t offset, T value) {
  if (b.size() < offset + sizeof value) b.resize(offset + sizeof value);
  std::memcpy(b.data() + offset, &value, sizeof value);
}

struct BzImageSpec {
  uint16_t version = 0x020f;
  uint8_t setup_sects = 2;
  uint64_t payload_size = 0x3000;
  uint8_t loadflags = 0x01;    // LOADED_HIGH
  uint16_t xloadflags = 0x03;  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  bool relocatable = true;
  uint32_t kernel_alignment = 0x200000;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x800000;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
};
std::vector<uint8_t> make_bzimage(const BzImageSpec& spec);
constexpr uint64_t kBzImagePayloadSeed = 5;

struct ElfSegmentSpec {
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  uint64_t file_size = 0;
  uint64_t mem_size = 0;
  uint64_t seed = 1;  // content pattern
};

struct ElfNoteSpec {
  std::string name;
  uint32_t type = 0;
  std::vector<uint8_t> desc;
};

struct ElfSpec {
  bool is_64 = true;
  uint16_t machine = 62;
  uint16_t type = 2;
  uint64_t entry = 0;
  std::vector<ElfSegmentSpec> segments;
  std::vector<ElfNoteSpec> notes;
  std::vector<uint8_t> after_headers;  // e.g. a multiboot header, placed right after the program headers
};
std::vector<uint8_t> make_elf(const ElfSpec& spec);
// Where make_elf put after_headers in the file.
uint64_t elf_after_headers_offset(const ElfSpec& spec);

// A "Xen" PHYS32_ENTRY note with a 4- or 8-byte address.
ElfNoteSpec pvh_note(uint64_t entry, size_t size = 4);

// A 12-byte multiboot header (magic, flags, checksum), plus the five a.out
// kludge address fields when flags has bit 16.
struct MultibootAout {
  uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
};
std::vector<uint8_t> multiboot_header(uint32_t flags, const MultibootAout& aout = {});

// A flat a.out-kludge multiboot image: header at file offset 0x20, the whole
// file loaded at load_addr, bss_size bytes of bss, entry at load_addr + 0x40.
struct MultibootAoutImage {
  std::vector<uint8_t> file;
  MultibootAout aout;
};
MultibootAoutImage make_multiboot_aout(uint32_t load_addr, uint64_t size, uint32_t bss_size, uint32_t extra_flags = 0);

}  // namespace hostvisor::arch::testing
