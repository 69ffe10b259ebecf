#include "arch/x86_64/elf_kernel.h"

#include <cstring>
#include <optional>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/boot_payload.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/elf_reader.h"

namespace hostvisor::arch {

namespace {

// The PVH entry from a "Xen" note of type 18: a 32-bit physical address,
// stored as 4 bytes or (Linux) as an 8-byte value that must fit 32 bits.
Result<std::optional<uint32_t>> find_pvh_entry(const ElfFile& elf) {
  for (const auto& note : elf.notes) {
    if (note.name != "Xen" || note.type != kXenElfNotePhys32Entry) continue;
    if (note.desc.size() == 4) {
      uint32_t v;
      std::memcpy(&v, note.desc.data(), 4);
      return std::optional<uint32_t>(v);
    }
    if (note.desc.size() == 8) {
      uint64_t v;
      std::memcpy(&v, note.desc.data(), 8);
      if (v > UINT32_MAX)
        return Error(ErrorCode::kCorrupt, "PVH entry point " + hex(v) + " in the Xen PHYS32_ENTRY note is above 4 GiB");
      return std::optional<uint32_t>(static_cast<uint32_t>(v));
    }
    return Error(ErrorCode::kCorrupt, "Xen PHYS32_ENTRY note has a " + std::to_string(note.desc.size()) +
                                          "-byte value; expected a 4- or 8-byte address");
  }
  return std::optional<uint32_t>();
}

bool inside_a_segment(const ElfFile& elf, uint64_t address) {
  for (const auto& s : elf.loads)
    if (address >= s.physical_address && address - s.physical_address < s.memory_size) return true;
  return false;
}

uint64_t lowest_segment(const ElfFile& elf) {
  uint64_t lowest = UINT64_MAX;
  for (const auto& s : elf.loads) lowest = s.physical_address < lowest ? s.physical_address : lowest;
  return lowest;
}

Result<void> write_pvh_start_info(GuestMemory& memory, const std::vector<E820Entry>& map, uint64_t cmdline,
                                  uint64_t acpi_rsdp, std::optional<uint64_t> initrd_address, uint64_t initrd_size) {
  if (map.size() > kPvhMaxMemmapEntries) return Error(ErrorCode::kInternal, "e820 map too large for the PVH page");
  HV_TRY(memory.fill(GuestAddress(kPvhStartInfoAddress), 0, kPageSize));
  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = kHvmStartInfoVersion;
  info.cmdline_paddr = cmdline;
  info.rsdp_paddr = acpi_rsdp;  // 0: the guest scans 0xE0000-0xFFFFF
  info.memmap_paddr = kPvhMemmapAddress;
  info.memmap_entries = static_cast<uint32_t>(map.size());
  if (initrd_address) {
    info.nr_modules = 1;
    info.modlist_paddr = kPvhModlistAddress;
    HvmModlistEntry module{};
    module.paddr = *initrd_address;
    module.size = initrd_size;
    HV_TRY(memory.write_obj(GuestAddress(kPvhModlistAddress), module));
  }
  for (size_t i = 0; i < map.size(); ++i) {
    HvmMemmapTableEntry entry{};
    entry.addr = map[i].address;
    entry.size = map[i].size;
    entry.type = static_cast<uint32_t>(map[i].type);
    HV_TRY(memory.write_obj(GuestAddress(kPvhMemmapAddress + i * sizeof entry), entry));
  }
  return memory.write_obj(GuestAddress(kPvhStartInfoAddress), info);
}

}  // namespace

Result<BootSetup> load_elf_kernel(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image) {
  const ElfFile elf = HV_TRY(parse_elf(image.kernel));
  if (!elf.is_64) return Error(ErrorCode::kUnsupported, "ELF32 kernel: only ELF64 x86-64 kernels are booted directly");
  if (elf.machine != kElfMachineX86_64)
    return Error(ErrorCode::kUnsupported,
                 "ELF machine " + std::to_string(elf.machine) + " is not x86-64 (62): wrong architecture");
  if (elf.type != kElfTypeExec)
    return Error(ErrorCode::kUnsupported, "ELF type " + std::to_string(elf.type) +
                                              " is not an executable (ET_EXEC): link the kernel statically");
  const std::optional<uint32_t> pvh_entry = HV_TRY(find_pvh_entry(elf));
  uint64_t entry;
  if (pvh_entry) {
    entry = *pvh_entry;
    if (!inside_a_segment(elf, entry))
      return Error(ErrorCode::kCorrupt, "PVH entry point " + hex(entry) + " is not inside any loadable segment");
  } else {
    entry = HV_TRY(elf_physical_entry(elf));
    if (entry >= kIdentityMappedSize)
      return Error(ErrorCode::kUnsupported,
                   "entry point " + hex(entry) + " is above the identity-mapped first 4 GiB: link the kernel lower");
  }

  const std::vector<E820Entry> map = e820_map(layout);
  const uint64_t kernel_end = HV_TRY(load_elf_segments(memory, map, elf, image.kernel));
  const uint64_t cmdline = HV_TRY(write_cmdline(memory, image.cmdline, kCmdlineMaxSize - 1));
  HV_TRY(write_boot_gdt(memory));

  std::optional<uint64_t> initrd_address;
  if (!image.initrd.empty()) {
    // High in RAM below 4 GiB, above the kernel (PVH and 64-bit code can
    // reach it there; a 32-bit guest could not reach RAM above 4 GiB).
    initrd_address =
        HV_TRY(load_initrd(memory, map, image.initrd, kernel_end, layout.low_ram_end, Placement::kHighest));
  }

  BootSetup setup;
  BootCpuState cpu;
  std::string what;
  if (pvh_entry) {
    HV_TRY(write_pvh_start_info(memory, map, cmdline, image.acpi_rsdp, initrd_address, image.initrd.size()));
    cpu = protected_mode_boot_state(*pvh_entry);
    cpu.regs.rbx = kPvhStartInfoAddress;
    setup.format = KernelFormat::kPvh;
    what = "PVH ELF64 kernel";
  } else {
    HV_TRY(write_identity_page_tables(memory));
    cpu = long_mode_boot_state(entry);
    cpu.regs.rsi = 0;
    cpu.regs.rdi = 0;
    setup.format = KernelFormat::kElf64;
    what = "ELF64 kernel";
  }
  setup.regs = cpu.regs;
  setup.sregs = cpu.sregs;
  setup.description =
      what + " loaded at [" + hex(lowest_segment(elf)) + ", " + hex(kernel_end) + "), entry " + hex(entry) +
      (initrd_address ? ", initrd " + std::to_string(image.initrd.size()) + " bytes at " + hex(*initrd_address)
                      : std::string());
  return setup;
}

}  // namespace hostvisor::arch
