// ELF64 x86-64 kernels: with a Xen PHYS32_ENTRY note they are booted by the
// PVH ABI (32-bit protected mode, EBX = hvm_start_info); without one they are
// entered at e_entry in 64-bit long mode with the first 4 GiB identity mapped.
#pragma once

#include <cstdint>

#include "arch/x86_64/kernel_image.h"
#include "arch/x86_64/layout.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

constexpr uint32_t kXenElfNotePhys32Entry = 18;  // XEN_ELFNOTE_PHYS32_ENTRY

// The PVH start-of-day structures (Xen public/arch-x86/hvm/start_info.h ABI).
constexpr uint32_t kHvmStartMagic = 0x336ec578;
constexpr uint32_t kHvmStartInfoVersion = 1;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version 1
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapTableEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapTableEntry) == 24);

// Where the pieces go inside the start_info page at kPvhStartInfoAddress.
constexpr uint64_t kPvhModlistAddress = kPvhStartInfoAddress + 0x40;
constexpr uint64_t kPvhMemmapAddress = kPvhStartInfoAddress + 0x100;
constexpr uint64_t kPvhMaxMemmapEntries = (kPageSize - 0x100) / sizeof(HvmMemmapTableEntry);

Result<BootSetup> load_elf_kernel(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image);

}  // namespace hostvisor::arch
