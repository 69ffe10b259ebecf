#include "arch/x86_64/elf_reader.h"

#include <cstring>

#include "arch/x86_64/boot_payload.h"
#include "arch/x86_64/layout.h"
#include "base/bytes.h"

namespace hostvisor::arch {

namespace {

constexpr uint8_t kElfClass32 = 1;
constexpr uint8_t kElfClass64 = 2;
constexpr uint8_t kElfDataLittleEndian = 1;
constexpr uint32_t kProgramLoad = 1;
constexpr uint32_t kProgramNote = 4;
constexpr uint16_t kPnXnum = 0xffff;  // real count lives in section 0: not for kernels
constexpr uint64_t kElf32HeaderSize = 52;
constexpr uint64_t kElf64HeaderSize = 64;
constexpr uint64_t kElf32PhdrSize = 32;
constexpr uint64_t kElf64PhdrSize = 56;

Error corrupt(const std::string& what) { return Error(ErrorCode::kCorrupt, "bad ELF file: " + what); }

// True when [offset, offset + size) is inside a file of file_size bytes.
bool in_file(uint64_t file_size, uint64_t offset, uint64_t size) {
  return offset <= file_size && size <= file_size - offset;
}

Result<void> parse_notes(std::span<const uint8_t> file, uint64_t offset, uint64_t size, uint64_t align,
                         std::vector<ElfNote>& notes) {
  const auto bytes = file.subspan(offset, size);
  // Notes are 4-byte aligned; an 8-aligned PT_NOTE uses 8-byte padding.
  const uint64_t pad = align == 8 ? 8 : 4;
  uint64_t pos = 0;
  while (bytes.size() - pos >= 12) {
    const uint32_t namesz = load_at<uint32_t>(bytes, pos);
    const uint32_t descsz = load_at<uint32_t>(bytes, pos + 4);
    const uint32_t type = load_at<uint32_t>(bytes, pos + 8);
    pos += 12;
    const uint64_t name_span = (uint64_t{namesz} + pad - 1) / pad * pad;
    if (!in_file(bytes.size(), pos, name_span) && !in_file(bytes.size(), pos, namesz))
      return corrupt("a note's name runs past its PT_NOTE segment");
    ElfNote note;
    note.type = type;
    const char* name = reinterpret_cast<const char*>(bytes.data() + pos);
    note.name.assign(name, strnlen(name, namesz));
    if (!in_file(bytes.size(), pos, name_span)) break;  // unpadded last name: nothing follows
    pos += name_span;
    if (!in_file(bytes.size(), pos, descsz)) return corrupt("a note's descriptor runs past its PT_NOTE segment");
    note.desc = bytes.subspan(pos, descsz);
    notes.push_back(std::move(note));
    const uint64_t desc_span = (uint64_t{descsz} + pad - 1) / pad * pad;
    if (!in_file(bytes.size(), pos, desc_span)) break;
    pos += desc_span;
  }
  return {};
}

}  // namespace

bool has_elf_magic(std::span<const uint8_t> file) {
  return file.size() >= 4 && file[0] == 0x7f && file[1] == 'E' && file[2] == 'L' && file[3] == 'F';
}

Result<ElfFile> parse_elf(std::span<const uint8_t> file) {
  if (!has_elf_magic(file)) return corrupt("no ELF magic at the start of the file");
  if (file.size() < 16) return corrupt("file ends inside the ELF identification bytes");
  const uint8_t elf_class = file[4];
  if (elf_class != kElfClass32 && elf_class != kElfClass64)
    return corrupt("unknown ELF class " + std::to_string(elf_class) + " (expected 1 for ELF32 or 2 for ELF64)");
  if (file[5] != kElfDataLittleEndian) return corrupt("not little-endian; x86 kernels are");
  if (file[6] != 1) return corrupt("unknown ELF version " + std::to_string(file[6]));

  ElfFile elf;
  elf.is_64 = elf_class == kElfClass64;
  const uint64_t header_size = elf.is_64 ? kElf64HeaderSize : kElf32HeaderSize;
  if (file.size() < header_size)
    return corrupt("file is " + std::to_string(file.size()) + " bytes, shorter than the ELF header");
  elf.type = load_at<uint16_t>(file, 16);
  elf.machine = load_at<uint16_t>(file, 18);
  uint64_t phoff;
  uint16_t phentsize, phnum;
  if (elf.is_64) {
    elf.entry = load_at<uint64_t>(file, 24);
    phoff = load_at<uint64_t>(file, 32);
    phentsize = load_at<uint16_t>(file, 54);
    phnum = load_at<uint16_t>(file, 56);
  } else {
    elf.entry = load_at<uint32_t>(file, 24);
    phoff = load_at<uint32_t>(file, 28);
    phentsize = load_at<uint16_t>(file, 42);
    phnum = load_at<uint16_t>(file, 44);
  }
  const uint64_t phdr_size = elf.is_64 ? kElf64PhdrSize : kElf32PhdrSize;
  if (phnum == 0) return corrupt("no program headers, so nothing to load");
  if (phnum == kPnXnum || phnum > kElfMaxProgramHeaders)
    return corrupt(std::to_string(phnum) + " program headers is more than a kernel has (at most " +
                   std::to_string(kElfMaxProgramHeaders) + " accepted)");
  // Entries may be larger than the fields we read (the stride is e_phentsize), never smaller.
  if (phentsize < phdr_size)
    return corrupt("program header size " + std::to_string(phentsize) + " is smaller than " +
                   std::to_string(phdr_size));
  if (!in_file(file.size(), phoff, uint64_t{phnum} * phentsize))
    return corrupt("program headers at offset " + hex(phoff) + " (" + std::to_string(phnum) +
                   " entries) run past the end of the " + std::to_string(file.size()) + "-byte file");

  for (uint32_t i = 0; i < phnum; ++i) {
    const uint64_t at = phoff + uint64_t{i} * phentsize;
    uint32_t p_type = load_at<uint32_t>(file, at);
    ElfSegment seg;
    uint64_t align;
    if (elf.is_64) {
      seg.file_offset = load_at<uint64_t>(file, at + 8);
      seg.virtual_address = load_at<uint64_t>(file, at + 16);
      seg.physical_address = load_at<uint64_t>(file, at + 24);
      seg.file_size = load_at<uint64_t>(file, at + 32);
      seg.memory_size = load_at<uint64_t>(file, at + 40);
      align = load_at<uint64_t>(file, at + 48);
    } else {
      seg.file_offset = load_at<uint32_t>(file, at + 4);
      seg.virtual_address = load_at<uint32_t>(file, at + 8);
      seg.physical_address = load_at<uint32_t>(file, at + 12);
      seg.file_size = load_at<uint32_t>(file, at + 16);
      seg.memory_size = load_at<uint32_t>(file, at + 20);
      align = load_at<uint32_t>(file, at + 28);
    }
    const std::string which = "program header " + std::to_string(i);
    if (p_type == kProgramLoad) {
      if (seg.memory_size == 0) continue;
      if (seg.file_size > seg.memory_size)
        return corrupt(which + ": file size " + hex(seg.file_size) + " exceeds memory size " + hex(seg.memory_size));
      if (!in_file(file.size(), seg.file_offset, seg.file_size))
        return corrupt(which + ": segment data [" + hex(seg.file_offset) + ", +" + hex(seg.file_size) +
                       ") runs past the end of the " + std::to_string(file.size()) + "-byte file (truncated?)");
      const uint64_t space_end = elf.is_64 ? 0 : 1ull << 32;  // 0: the whole 64-bit space
      if (seg.physical_address > UINT64_MAX - seg.memory_size ||
          (space_end != 0 && seg.physical_address + seg.memory_size > space_end))
        return corrupt(which + ": segment at " + hex(seg.physical_address) + " of size " + hex(seg.memory_size) +
                       " wraps the address space");
      elf.loads.push_back(seg);
    } else if (p_type == kProgramNote) {
      if (!in_file(file.size(), seg.file_offset, seg.file_size))
        return corrupt(which + ": notes run past the end of the file");
      HV_TRY(parse_notes(file, seg.file_offset, seg.file_size, align, elf.notes));
    }
  }
  if (elf.loads.empty()) return corrupt("no loadable (PT_LOAD) segments");
  return elf;
}

Result<uint64_t> elf_physical_entry(const ElfFile& elf) {
  for (const auto& s : elf.loads)
    if (elf.entry >= s.physical_address && elf.entry - s.physical_address < s.memory_size) return elf.entry;
  for (const auto& s : elf.loads)
    if (elf.entry >= s.virtual_address && elf.entry - s.virtual_address < s.memory_size)
      return s.physical_address + (elf.entry - s.virtual_address);
  return corrupt("entry point " + hex(elf.entry) + " is not inside any loadable segment");
}

Result<uint64_t> load_elf_segments(GuestMemory& memory, const std::vector<E820Entry>& map, const ElfFile& elf,
                                   std::span<const uint8_t> file) {
  uint64_t highest_end = 0;
  for (size_t i = 0; i < elf.loads.size(); ++i) {
    const ElfSegment& s = elf.loads[i];
    const std::string range = "[" + hex(s.physical_address) + ", " + hex(s.physical_address + s.memory_size) + ")";
    if (ranges_overlap(s.physical_address, s.memory_size, kBootStructuresStart,
                       kBootStructuresEnd - kBootStructuresStart))
      return Error(ErrorCode::kOutOfRange, "ELF segment " + range + " overlaps the boot structures at [" +
                                               hex(kBootStructuresStart) + ", " + hex(kBootStructuresEnd) +
                                               "): link the kernel at 1 MiB or above");
    if (!is_usable_ram(map, s.physical_address, s.memory_size))
      return Error(ErrorCode::kOutOfRange, "ELF segment " + range +
                                               " is not inside usable guest RAM: give the VM more memory (--memory) "
                                               "or link the kernel at an address in RAM (1 MiB and up)");
    auto dest = HV_TRY(memory.slice(GuestAddress(s.physical_address), s.memory_size));
    std::memcpy(dest.data(), file.data() + s.file_offset, s.file_size);
    std::memset(dest.data() + s.file_size, 0, s.memory_size - s.file_size);
    if (s.physical_address + s.memory_size > highest_end) highest_end = s.physical_address + s.memory_size;
  }
  return highest_end;
}

}  // namespace hostvisor::arch
