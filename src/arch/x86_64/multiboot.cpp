#include "arch/x86_64/multiboot.h"

#include <cstring>
#include <vector>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/boot_payload.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/elf_reader.h"
#include "base/bytes.h"

namespace hostvisor::arch {

using namespace multiboot;

namespace {

Error bad(ErrorCode code, const std::string& what) { return Error(code, "multiboot kernel: " + what); }

constexpr char kInitrdString[] = "initrd";
constexpr char kLoaderName[] = "hostvisor";

struct LoadedKernel {
  uint64_t start = 0;
  uint64_t end = 0;  // one past the last byte, bss included
  uint64_t entry = 0;
  const char* how = "";
};

Result<void> check_destination(const std::vector<E820Entry>& map, uint64_t start, uint64_t end) {
  const std::string range = "[" + hex(start) + ", " + hex(end) + ")";
  if (ranges_overlap(start, end - start, kBootStructuresStart, kBootStructuresEnd - kBootStructuresStart))
    return bad(ErrorCode::kOutOfRange, "image " + range + " overlaps the boot structures at [" +
                                           hex(kBootStructuresStart) + ", " + hex(kBootStructuresEnd) +
                                           "): link the kernel at 1 MiB or above");
  if (!is_usable_ram(map, start, end - start))
    return bad(ErrorCode::kOutOfRange, "image " + range +
                                           " is not inside usable guest RAM: give the VM more memory (--memory) or "
                                           "link the kernel at an address in RAM (1 MiB and up)");
  return {};
}

// Flag 16: the header says where the image goes (Multiboot 0.6.96, 3.1.3).
Result<LoadedKernel> load_aout_kludge(GuestMemory& memory, const std::vector<E820Entry>& map,
                                      std::span<const uint8_t> file, const MultibootHeader& header) {
  if (file.size() - header.offset < 32)
    return bad(ErrorCode::kCorrupt, "the file ends inside the header's address fields (flag 16 is set)");
  const uint64_t header_addr = load_at<uint32_t>(file, header.offset + 12);
  const uint64_t load_addr = load_at<uint32_t>(file, header.offset + 16);
  const uint64_t load_end_addr = load_at<uint32_t>(file, header.offset + 20);
  const uint64_t bss_end_addr = load_at<uint32_t>(file, header.offset + 24);
  const uint64_t entry_addr = load_at<uint32_t>(file, header.offset + 28);
  if (load_addr > header_addr)
    return bad(ErrorCode::kCorrupt,
               "load_addr " + hex(load_addr) + " is above header_addr " + hex(header_addr) + "; it must not be");
  if (header_addr - load_addr > header.offset)
    return bad(ErrorCode::kCorrupt, "header_addr - load_addr = " + hex(header_addr - load_addr) +
                                        " puts the image start before the beginning of the file (header at offset " +
                                        hex(header.offset) + ")");
  const uint64_t file_offset = header.offset - (header_addr - load_addr);
  uint64_t load_size;
  if (load_end_addr == 0) {
    load_size = file.size() - file_offset;  // the rest of the file
  } else {
    if (load_end_addr < load_addr)
      return bad(ErrorCode::kCorrupt, "load_end_addr " + hex(load_end_addr) + " is below load_addr " + hex(load_addr));
    load_size = load_end_addr - load_addr;
    if (load_size > file.size() - file_offset)
      return bad(ErrorCode::kCorrupt, "header asks to load " + std::to_string(load_size) + " bytes from offset " +
                                          hex(file_offset) + " but the file is only " + std::to_string(file.size()) +
                                          " bytes (truncated file?)");
  }
  uint64_t end = load_addr + load_size;
  if (bss_end_addr != 0) {
    if (bss_end_addr < end)
      return bad(ErrorCode::kCorrupt,
                 "bss_end_addr " + hex(bss_end_addr) + " is below the end of the loaded data " + hex(end));
    end = bss_end_addr;
  }
  if (end == load_addr) return bad(ErrorCode::kCorrupt, "the header describes an empty image");
  if (entry_addr < load_addr || entry_addr >= end)
    return bad(ErrorCode::kCorrupt,
               "entry_addr " + hex(entry_addr) + " is outside the image [" + hex(load_addr) + ", " + hex(end) + ")");
  HV_TRY(check_destination(map, load_addr, end));
  auto dest = HV_TRY(memory.slice(GuestAddress(load_addr), end - load_addr));
  std::memcpy(dest.data(), file.data() + file_offset, load_size);
  std::memset(dest.data() + load_size, 0, end - load_addr - load_size);
  return LoadedKernel{load_addr, end, entry_addr, "a.out kludge"};
}

// No flag 16: an ELF32 loaded by its program headers at their physical addresses.
Result<LoadedKernel> load_elf32(GuestMemory& memory, const std::vector<E820Entry>& map, std::span<const uint8_t> file) {
  if (!has_elf_magic(file))
    return bad(ErrorCode::kCorrupt,
               "the header has no load addresses (flag 16 clear), so the file must be an ELF32 image, and it is not");
  const ElfFile elf = HV_TRY(parse_elf(file));
  if (elf.is_64)
    return bad(ErrorCode::kUnsupported,
               "an ELF64 image without the a.out kludge (flag 16): multiboot v1 loads ELF32 images only");
  if (elf.machine != kElfMachine386)
    return bad(ErrorCode::kUnsupported, "ELF machine " + std::to_string(elf.machine) + " is not i386 (3)");
  if (elf.type != kElfTypeExec)
    return bad(ErrorCode::kUnsupported, "ELF type " + std::to_string(elf.type) + " is not an executable (ET_EXEC)");
  const uint64_t entry = HV_TRY(elf_physical_entry(elf));
  const uint64_t end = HV_TRY(load_elf_segments(memory, map, elf, file));
  uint64_t start = UINT64_MAX;
  for (const auto& s : elf.loads) start = s.physical_address < start ? s.physical_address : start;
  return LoadedKernel{start, end, entry, "ELF32"};
}

Result<void> write_info(GuestMemory& memory, const std::vector<E820Entry>& map, uint64_t cmdline,
                        std::optional<uint64_t> initrd_address, uint64_t initrd_size, uint64_t module_string) {
  if (map.size() > kMaxMmapEntries) return Error(ErrorCode::kInternal, "e820 map too large for the multiboot page");
  HV_TRY(memory.fill(GuestAddress(kMultibootInfoAddress), 0, kPageSize));
  Info info{};
  info.flags = kInfoMemory | kInfoCmdline | kInfoMemoryMap | kInfoBootLoaderName;
  // mem_lower/mem_upper: the usable RAM from 0 and from 1 MiB, in KiB.
  for (const auto& e : map) {
    if (e.type != E820Type::kRam) continue;
    if (e.address == 0) info.mem_lower = static_cast<uint32_t>(e.size / kKiB);
    if (e.address == kHighMemoryStart) info.mem_upper = static_cast<uint32_t>(e.size / kKiB);
  }
  info.cmdline = static_cast<uint32_t>(cmdline);
  info.boot_loader_name = static_cast<uint32_t>(kLoaderNameAddress);
  HV_TRY(memory.write(GuestAddress(kLoaderNameAddress),
                      std::span(reinterpret_cast<const uint8_t*>(kLoaderName), sizeof kLoaderName)));
  if (initrd_address) {
    info.flags |= kInfoModules;
    info.mods_count = 1;
    info.mods_addr = static_cast<uint32_t>(kModulesAddress);
    Module module{};
    module.mod_start = static_cast<uint32_t>(*initrd_address);
    module.mod_end = static_cast<uint32_t>(*initrd_address + initrd_size);
    module.string = static_cast<uint32_t>(module_string);
    HV_TRY(memory.write_obj(GuestAddress(kModulesAddress), module));
  }
  for (size_t i = 0; i < map.size(); ++i) {
    MmapEntry entry{};
    entry.size = sizeof(MmapEntry) - sizeof(entry.size);
    entry.base_addr = map[i].address;
    entry.length = map[i].size;
    entry.type = static_cast<uint32_t>(map[i].type);
    HV_TRY(memory.write_obj(GuestAddress(kMmapAddress + i * sizeof entry), entry));
  }
  info.mmap_addr = static_cast<uint32_t>(kMmapAddress);
  info.mmap_length = static_cast<uint32_t>(map.size() * sizeof(MmapEntry));
  return memory.write_obj(GuestAddress(kMultibootInfoAddress), info);
}

}  // namespace

std::optional<MultibootHeader> find_multiboot_header(std::span<const uint8_t> file) {
  const uint64_t limit = file.size() < kSearchLimit ? file.size() : kSearchLimit;
  std::optional<MultibootHeader> first;
  for (uint64_t at = 0; at + 12 <= limit; at += kHeaderAlign) {
    if (load_at<uint32_t>(file, at) != kHeaderMagic) continue;
    MultibootHeader h;
    h.offset = at;
    h.flags = load_at<uint32_t>(file, at + 4);
    h.checksum_ok = static_cast<uint32_t>(kHeaderMagic + h.flags + load_at<uint32_t>(file, at + 8)) == 0;
    if (h.checksum_ok) return h;
    if (!first) first = h;
  }
  return first;
}

Result<BootSetup> load_multiboot(GuestMemory& memory, const MemoryLayout& layout, const KernelImage& image) {
  const std::span<const uint8_t> file = image.kernel;
  const std::optional<MultibootHeader> header = find_multiboot_header(file);
  if (!header)
    return bad(ErrorCode::kCorrupt, "no multiboot header (magic 0x1BADB002, 32-bit aligned) in the first 8 KiB");
  if (!header->checksum_ok)
    return bad(ErrorCode::kCorrupt, "the multiboot header at offset " + hex(header->offset) +
                                        " has a bad checksum (magic + flags + checksum must be 0 modulo 2^32)");
  const uint32_t unknown = header->flags & kHeaderRequiredMask & ~kHeaderUnderstood;
  if (unknown != 0)
    return bad(ErrorCode::kUnsupported, "the header requires features hostvisor does not provide (flag bits " +
                                            hex(unknown) + "); only bits 0-2 of the required flags are supported");

  const std::vector<E820Entry> map = e820_map(layout);
  const LoadedKernel kernel = HV_TRY((header->flags & kHeaderAoutKludge) ? load_aout_kludge(memory, map, file, *header)
                                                                         : load_elf32(memory, map, file));
  if (kernel.entry > UINT32_MAX)
    return bad(ErrorCode::kCorrupt, "entry point " + hex(kernel.entry) + " is not a 32-bit address");
  // "NAME ARGS", as GRUB's `multiboot NAME ARGS` and QEMU's -kernel give it.
  std::string full_cmdline = image.kernel_name;
  if (!image.cmdline.empty()) full_cmdline += (full_cmdline.empty() ? "" : " ") + image.cmdline;
  const std::string module_string = image.initrd_name.empty() ? std::string(kInitrdString) : image.initrd_name;
  // The module's string follows the command line in the same area.
  if (full_cmdline.size() + 1 + module_string.size() + 1 > kCmdlineMaxSize)
    return bad(ErrorCode::kInvalidArgument, "the command line and the initrd's name take " +
                                                std::to_string(full_cmdline.size() + module_string.size() + 2) +
                                                " bytes, more than the " + std::to_string(kCmdlineMaxSize) +
                                                " there is room for: shorten --append");
  const uint64_t cmdline = HV_TRY(write_cmdline(memory, full_cmdline, kCmdlineMaxSize - 1));
  const uint64_t module_string_address = cmdline + full_cmdline.size() + 1;
  HV_TRY(memory.write(GuestAddress(module_string_address),
                      std::span(reinterpret_cast<const uint8_t*>(module_string.c_str()), module_string.size() + 1)));

  std::optional<uint64_t> initrd_address;
  if (!image.initrd.empty()) {
    // Modules go just above the kernel, page-aligned whether or not header
    // flag 0 asks for it; a 32-bit kernel can only reach RAM below 4 GiB.
    initrd_address = HV_TRY(load_initrd(memory, map, image.initrd, kernel.end, layout.low_ram_end, Placement::kLowest));
  }
  HV_TRY(write_info(memory, map, cmdline, initrd_address, image.initrd.size(), module_string_address));
  HV_TRY(write_boot_gdt(memory));

  BootCpuState cpu = protected_mode_boot_state(static_cast<uint32_t>(kernel.entry));
  cpu.regs.rax = kBootloaderMagic;
  cpu.regs.rbx = kMultibootInfoAddress;
  BootSetup setup;
  setup.format = KernelFormat::kMultiboot;
  setup.regs = cpu.regs;
  setup.sregs = cpu.sregs;
  setup.description = std::string("multiboot kernel (") + kernel.how + ") loaded at [" + hex(kernel.start) + ", " +
                      hex(kernel.end) + "), entry " + hex(kernel.entry) +
                      (initrd_address ? ", initrd " + std::to_string(image.initrd.size()) + " bytes at " +
                                            hex(*initrd_address) + " as module 0"
                                      : std::string()) +
                      ((header->flags & kHeaderVideoMode) ? "; video mode requested, text mode provided" : "");
  return setup;
}

}  // namespace hostvisor::arch
