/* Turns the boot information of each protocol into a struct boot_info, and is
 * the C entry point the assembly entry stubs call. The structures come from
 * the loader, so every pointer and count is checked before use: a bad one
 * becomes info->error, never a wild read. */
#include "hvtest.h"

/* Everything below 4 GiB is identity mapped (by the loader for 64-bit entries,
 * by boot/long_mode.S for 32-bit ones). */
static bool addressable(uint64_t addr, uint64_t size) {
  const uint64_t limit = 1ull << 32;
  return addr != 0 && addr < limit && size <= limit - addr;
}

static uint8_t read8(uint64_t addr) { return *(volatile const uint8_t*)(uintptr_t)addr; }
static uint16_t read16(uint64_t addr) { return *(volatile const uint16_t*)(uintptr_t)addr; }
static uint32_t read32(uint64_t addr) { return *(volatile const uint32_t*)(uintptr_t)addr; }
static uint64_t read64(uint64_t addr) { return *(volatile const uint64_t*)(uintptr_t)addr; }

/* A NUL-terminated string of at most max_len bytes at addr, or NULL. */
static const char* checked_string(uint64_t addr, uint64_t max_len) {
  if (!addressable(addr, 1)) return NULL;
  for (uint64_t i = 0; i < max_len && addressable(addr + i, 1); i++) {
    if (read8(addr + i) == 0) return (const char*)(uintptr_t)addr;
  }
  return NULL;
}

static void add_range(struct boot_info* info, uint64_t addr, uint64_t size, uint32_t type) {
  if (info->range_count == BOOT_INFO_MAX_RANGES) {
    info->ranges_truncated = true;
    return;
  }
  info->ranges[info->range_count++] = (struct mem_range){addr, size, type};
}

enum { CMDLINE_MAX = 4096 };

/* Linux boot protocol: struct boot_params (the "zero page"). */
enum {
  BP_EXT_RAMDISK_IMAGE = 0x0c0,
  BP_EXT_RAMDISK_SIZE = 0x0c4,
  BP_EXT_CMD_LINE_PTR = 0x0c8,
  BP_E820_ENTRIES = 0x1e8,
  BP_BOOT_FLAG = 0x1fe,
  BP_HEADER = 0x202,
  BP_RAMDISK_IMAGE = 0x218,
  BP_RAMDISK_SIZE = 0x21c,
  BP_CMD_LINE_PTR = 0x228,
  BP_E820_TABLE = 0x2d0,
  BP_E820_MAX = 128,
  BP_SIZE = 4096,
};

static void parse_boot_params(struct boot_info* info, uint64_t bp) {
  if (!addressable(bp, BP_SIZE)) {
    info->error = "no boot_params: RSI/ESI does not point at a 4 KiB zero page below 4 GiB";
    return;
  }
  if (read16(bp + BP_BOOT_FLAG) != 0xaa55 || read32(bp + BP_HEADER) != 0x53726448) {
    info->error = "boot_params has no setup header (boot_flag 0xAA55 / \"HdrS\" missing)";
    return;
  }
  uint64_t cmdline = read32(bp + BP_CMD_LINE_PTR) | (uint64_t)read32(bp + BP_EXT_CMD_LINE_PTR) << 32;
  if (cmdline) info->cmdline = checked_string(cmdline, CMDLINE_MAX);
  uint64_t rd_addr = read32(bp + BP_RAMDISK_IMAGE) | (uint64_t)read32(bp + BP_EXT_RAMDISK_IMAGE) << 32;
  uint64_t rd_size = read32(bp + BP_RAMDISK_SIZE) | (uint64_t)read32(bp + BP_EXT_RAMDISK_SIZE) << 32;
  if (rd_size) {
    info->has_initrd = true;
    info->initrd_addr = rd_addr;
    info->initrd_size = rd_size;
  }
  uint32_t entries = read8(bp + BP_E820_ENTRIES);
  if (entries > BP_E820_MAX) {
    info->error = "boot_params.e820_entries is larger than the 128-entry e820_table";
    return;
  }
  for (uint32_t i = 0; i < entries; i++) {
    uint64_t e = bp + BP_E820_TABLE + 20ull * i;
    add_range(info, read64(e), read64(e + 8), read32(e + 16));
  }
}

/* Multiboot (v1) information structure. */
enum {
  MB_MAGIC = 0x2badb002,
  MB_FLAG_MEM = 1u << 0,
  MB_FLAG_CMDLINE = 1u << 2,
  MB_FLAG_MODS = 1u << 3,
  MB_FLAG_MMAP = 1u << 6,
  MB_INFO_SIZE = 88,
};

static void parse_multiboot(struct boot_info* info, uint64_t mbi, uint64_t magic) {
  if (magic != MB_MAGIC) {
    info->error = "EAX does not hold the multiboot magic 0x2BADB002";
    return;
  }
  if (!addressable(mbi, MB_INFO_SIZE)) {
    info->error = "EBX does not point at a multiboot_info structure below 4 GiB";
    return;
  }
  uint32_t flags = read32(mbi);
  if (flags & MB_FLAG_MEM) {
    info->has_mem_lower_upper = true;
    info->mem_lower_kib = read32(mbi + 4);
    info->mem_upper_kib = read32(mbi + 8);
  }
  if (flags & MB_FLAG_CMDLINE) info->cmdline = checked_string(read32(mbi + 16), CMDLINE_MAX);
  if (flags & MB_FLAG_MODS) {
    uint32_t count = read32(mbi + 20);
    uint64_t mods = read32(mbi + 24);
    if (count > 0) {
      if (!addressable(mods, 16)) {
        info->error = "multiboot mods_addr is not addressable";
        return;
      }
      uint32_t start = read32(mods), end = read32(mods + 4);
      if (end < start) {
        info->error = "multiboot module 0 ends before it starts";
        return;
      }
      info->has_initrd = true;
      info->initrd_addr = start;
      info->initrd_size = end - start;
    }
  }
  if (flags & MB_FLAG_MMAP) {
    uint64_t addr = read32(mbi + 48);
    uint64_t length = read32(mbi + 44);
    if (!addressable(addr, length)) {
      info->error = "multiboot mmap_addr/mmap_length are not addressable";
      return;
    }
    /* Each entry is preceded by its size, which does not count itself. */
    for (uint64_t off = 0; off + 4 <= length;) {
      uint32_t size = read32(addr + off);
      if (size < 20 || off + 4 + size > length) {
        info->error = "multiboot mmap entry has a bad size field";
        return;
      }
      uint64_t e = addr + off + 4;
      add_range(info, read64(e), read64(e + 8), read32(e + 16));
      off += 4 + (uint64_t)size;
    }
  }
}

/* PVH: struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h layout). */
enum { PVH_MAGIC = 0x336ec578, PVH_INFO_SIZE = 56, PVH_MODULE_SIZE = 32, PVH_MEMMAP_ENTRY_SIZE = 24 };

static void parse_pvh(struct boot_info* info, uint64_t si) {
  if (!addressable(si, PVH_INFO_SIZE)) {
    info->error = "EBX does not point at an hvm_start_info below 4 GiB";
    return;
  }
  if (read32(si) != PVH_MAGIC) {
    info->error = "hvm_start_info.magic is not 0x336EC578";
    return;
  }
  uint32_t version = read32(si + 4);
  uint32_t nr_modules = read32(si + 12);
  uint64_t modlist = read64(si + 16);
  uint64_t cmdline = read64(si + 24);
  if (cmdline) info->cmdline = checked_string(cmdline, CMDLINE_MAX);
  if (nr_modules > 0) {
    if (!addressable(modlist, PVH_MODULE_SIZE)) {
      info->error = "hvm_start_info.modlist_paddr is not addressable";
      return;
    }
    info->has_initrd = true;
    info->initrd_addr = read64(modlist);
    info->initrd_size = read64(modlist + 8);
  }
  if (version >= 1) {
    uint64_t memmap = read64(si + 40);
    uint32_t entries = read32(si + 48);
    if (entries > 1024 || (entries && !addressable(memmap, (uint64_t)entries * PVH_MEMMAP_ENTRY_SIZE))) {
      info->error = "hvm_start_info.memmap_paddr/memmap_entries are not addressable";
      return;
    }
    for (uint32_t i = 0; i < entries; i++) {
      uint64_t e = memmap + (uint64_t)i * PVH_MEMMAP_ENTRY_SIZE;
      add_range(info, read64(e), read64(e + 8), read32(e + 16));
    }
  }
}

static struct boot_info boot_info;

static void serial_setup(void) {
  outb(COM1 + 1, 0x00); /* IER: no interrupts, output is polled */
  outb(COM1 + 3, 0x03); /* LCR: 8N1, divisor latch closed */
}

/* Called by boot/start64.S with the entry registers of the boot protocol. */
__attribute__((noreturn)) void runtime_start(uint32_t format, uint64_t pointer, uint64_t magic) {
  serial_setup();
  struct boot_info* info = &boot_info;
  info->format = (enum boot_format)format;
  info->raw_pointer = pointer;
  switch (format) {
    case BOOT_BZIMAGE:
      info->format_name = "bzimage";
      parse_boot_params(info, pointer);
      break;
    case BOOT_PVH:
      info->format_name = "pvh";
      parse_pvh(info, pointer);
      break;
    case BOOT_MULTIBOOT:
      info->format_name = "multiboot";
      parse_multiboot(info, pointer, magic);
      break;
    case BOOT_ELF64:
      /* hostvisor's plain ELF64 protocol passes no boot information (RSI = 0);
       * a loader that starts it like a Linux vmlinux passes boot_params. */
      info->format_name = "elf64";
      if (pointer)
        parse_boot_params(info, pointer);
      else
        info->error = "the plain ELF64 protocol passed no boot information (RSI = 0)";
      break;
    default:
      info->format_name = "unknown";
      info->error = "entry stub passed an unknown format";
      break;
  }
  test_main(info);
  test_fail("test_main returned without a verdict");
}
