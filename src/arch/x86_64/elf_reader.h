// A bounds-checked reader for ELF32/ELF64 executables (little endian): the
// file header, PT_LOAD segments and the notes in PT_NOTE segments, plus
// loading the segments into guest RAM by physical address. Every offset and
// size comes from a hostile file and is checked against the file size with
// overflow-safe arithmetic before use.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/e820.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

constexpr uint16_t kElfTypeExec = 2;
constexpr uint16_t kElfMachine386 = 3;
constexpr uint16_t kElfMachineX86_64 = 62;
constexpr uint32_t kElfMaxProgramHeaders = 1024;  // real kernels have a handful

struct ElfSegment {
  uint64_t physical_address = 0;
  uint64_t virtual_address = 0;
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint64_t memory_size = 0;
};

struct ElfNote {
  std::string name;  // without the terminating NUL
  uint32_t type = 0;
  std::span<const uint8_t> desc;
};

struct ElfFile {
  bool is_64 = false;
  uint16_t type = 0;
  uint16_t machine = 0;
  uint64_t entry = 0;
  std::vector<ElfSegment> loads;  // PT_LOAD with a non-zero memory size, in file order
  std::vector<ElfNote> notes;     // from every PT_NOTE segment
};

// True when the file starts with the ELF magic.
bool has_elf_magic(std::span<const uint8_t> file);

// Parses and validates; desc spans point into file.
Result<ElfFile> parse_elf(std::span<const uint8_t> file);

// The physical entry address: e_entry itself when it lies in a segment's
// physical range, else e_entry translated through the segment whose virtual
// range holds it (kernels linked high with low load addresses). Fails when
// the entry is in no loaded segment.
Result<uint64_t> elf_physical_entry(const ElfFile& elf);

// Copies every PT_LOAD segment to its physical address and zeroes its bss.
// Each segment must lie in usable RAM and clear of the boot structures.
// Returns the end of the highest segment.
Result<uint64_t> load_elf_segments(GuestMemory& memory, const std::vector<E820Entry>& map, const ElfFile& elf,
                                   std::span<const uint8_t> file);

}  // namespace hostvisor::arch
