// Multiboot v1 kernels (Multiboot Specification 0.6.96): a header in the
// first 8 KiB; the image is loaded by the header's a.out-kludge addresses
// (flag 16) or else as an ELF32 by its program headers, and entered in flat
// 32-bit protected mode with EAX = 0x2BADB002 and EBX = the multiboot_info.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "arch/x86_64/kernel_image.h"
#include "arch/x86_64/layout.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

namespace multiboot {
constexpr uint32_t kHeaderMagic = 0x1badb002;
constexpr uint32_t kBootloaderMagic = 0x2badb002;  // in EAX at entry
constexpr uint64_t kSearchLimit = 8192;            // the header is in the first 8 KiB ...
constexpr uint64_t kHeaderAlign = 4;               // ... 32-bit aligned

// Header flags. Bits 0-15 are requirements a loader must refuse if it does
// not understand them; 16-31 are optional.
constexpr uint32_t kHeaderPageAlignModules = 1u << 0;
constexpr uint32_t kHeaderMemoryInfo = 1u << 1;
constexpr uint32_t kHeaderVideoMode = 1u << 2;
constexpr uint32_t kHeaderAoutKludge = 1u << 16;
constexpr uint32_t kHeaderRequiredMask = 0xffff;
constexpr uint32_t kHeaderUnderstood = kHeaderPageAlignModules | kHeaderMemoryInfo | kHeaderVideoMode;

// multiboot_info flags.
constexpr uint32_t kInfoMemory = 1u << 0;
constexpr uint32_t kInfoCmdline = 1u << 2;
constexpr uint32_t kInfoModules = 1u << 3;
constexpr uint32_t kInfoMemoryMap = 1u << 6;
constexpr uint32_t kInfoBootLoaderName = 1u << 9;

// The multiboot_info structure, offsets 0..87 (VBE and framebuffer fields,
// which hostvisor does not provide, are left zero after it).
struct Info {
  uint32_t flags;
  uint32_t mem_lower;  // KiB from 0
  uint32_t mem_upper;  // KiB from 1 MiB
  uint32_t boot_device;
  uint32_t cmdline;
  uint32_t mods_count;
  uint32_t mods_addr;
  uint32_t syms[4];
  uint32_t mmap_length;
  uint32_t mmap_addr;
  uint32_t drives_length;
  uint32_t drives_addr;
  uint32_t config_table;
  uint32_t boot_loader_name;
  uint32_t apm_table;
  uint32_t vbe_control_info;
  uint32_t vbe_mode_info;
  uint16_t vbe_mode;
  uint16_t vbe_interface_seg;
  uint16_t vbe_interface_off;
  uint16_t vbe_interface_len;
};
static_assert(sizeof(Info) == 88);

struct Module {
  uint32_t mod_start;
  uint32_t mod_end;  // one past the last byte
  uint32_t string;
  uint32_t reserved;
};
static_assert(sizeof(Module) == 16);

#pragma pack(push, 1)
struct MmapEntry {
  uint32_t size;  // of the rest of the entry (20): comes first, before base_addr
  uint64_t base_addr;
  uint64_t length;
  uint32_t type;
};
#pragma pack(pop)
static_assert(sizeof(MmapEntry) == 24);

// Where the pieces go inside the page at kMultibootInfoAddress.
constexpr uint64_t kModulesAddress = kMultibootInfoAddress + 0x100;
constexpr uint64_t kLoaderNameAddress = kMultibootInfoAddress + 0x1a0;
constexpr uint64_t kMmapAddress = kMultibootInfoAddress + 0x200;
constexpr uint64_t kMaxMmapEntries = (kPageSize - 0x200) / sizeof(MmapEntry);
}  // namespace multiboot

struct MultibootHeader {
  uint64_t offset = 0;  // in the file
  uint32_t flags = 0;
  bool checksum_ok = false;
};

// The first 32-bit-aligned multiboot magic in the first 8 KiB with room for
// magic, flags and checksum, and whether its checksum is right.
std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> file);

Result<BootSetup> load_multiboot(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image);

}  // namespace hostvisor::arch
