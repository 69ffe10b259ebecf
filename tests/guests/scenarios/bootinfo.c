/* Checks what the boot protocol that started the kernel promises: the CPU
 * state at entry (and, for 64-bit entries, the loader's identity map of the
 * low 4 GiB), then the boot information against what the integration test
 * passed: the command line, the initrd (module 0) and the memory map for
 * --memory HVT_BOOTINFO_MEMORY_MIB. Plain ELF64 carries no boot information,
 * so only the entry state and the identity map are checked there. */
#include "hvtest.h"

const char test_scenario[] = "bootinfo";

enum { MIB = 1 << 20 };

static const char* type_name(uint32_t type) {
  switch (type) {
    case 1: return "usable";
    case 2: return "reserved";
    case 3: return "acpi";
    case 4: return "nvs";
    case 5: return "unusable";
    default: return "other";
  }
}

/* True if a usable range contains [addr, addr + size). */
static bool usable_covers(const struct boot_info* info, uint64_t addr, uint64_t size) {
  for (uint32_t i = 0; i < info->range_count; i++) {
    const struct mem_range* r = &info->ranges[i];
    if (r->type == MEM_USABLE && r->addr <= addr && addr - r->addr <= r->size && r->size - (addr - r->addr) >= size)
      return true;
  }
  return false;
}

/* The kernel image as linked, .bss included (boot/kernel.ld). */
extern const char __image_start[], __image_end[];

static bool overlaps_image(uint64_t addr, uint64_t size) {
  const uint64_t start = (uint64_t)(uintptr_t)__image_start, end = (uint64_t)(uintptr_t)__image_end;
  return addr < end && start - addr < size;
}

static void check_cmdline(const struct boot_info* info) {
  if (!info->cmdline) test_fail("no command line was passed");
  print("cmdline: \"%s\"\n", info->cmdline);
  if (overlaps_image((uint64_t)(uintptr_t)info->cmdline, strlen(info->cmdline) + 1))
    test_fail("the command line at %p lies inside the kernel image", info->cmdline);
  /* Multiboot loaders put the kernel's file name first, so look for the words
   * rather than an exact match; they must end the line. */
  const char* found = strstr(info->cmdline, HVT_BOOTINFO_CMDLINE);
  if (!found) test_fail("command line \"%s\" lacks \"%s\"", info->cmdline, HVT_BOOTINFO_CMDLINE);
  if (found != info->cmdline && found[-1] != ' ')
    test_fail("\"%s\" is not a separate word in the command line", HVT_BOOTINFO_CMDLINE);
  if (strcmp(found, HVT_BOOTINFO_CMDLINE) != 0)
    test_fail("the command line has extra text after \"%s\"", HVT_BOOTINFO_CMDLINE);
}

static void check_initrd(const struct boot_info* info) {
  if (!info->has_initrd) test_fail("no initrd/module was passed");
  print("initrd: 0x%lx, %lu bytes\n", info->initrd_addr, info->initrd_size);
  if (info->initrd_addr == 0 || info->initrd_addr >= (1ull << 32) ||
      info->initrd_size > (1ull << 32) - info->initrd_addr)
    test_fail("initrd range 0x%lx+0x%lx is not below 4 GiB", info->initrd_addr, info->initrd_size);
  if (info->initrd_size < sizeof(struct hvt_initrd_header)) test_fail("initrd is shorter than its header");
  if (overlaps_image(info->initrd_addr, info->initrd_size))
    test_fail("initrd 0x%lx+0x%lx overlaps the kernel image 0x%lx-0x%lx (.bss included)", info->initrd_addr,
              info->initrd_size, (uint64_t)(uintptr_t)__image_start, (uint64_t)(uintptr_t)__image_end);
  if (!usable_covers(info, info->initrd_addr, info->initrd_size))
    test_fail("initrd at 0x%lx is not inside usable RAM of the memory map", info->initrd_addr);
  const struct hvt_initrd_header* header = (const struct hvt_initrd_header*)(uintptr_t)info->initrd_addr;
  if (header->magic != HVT_INITRD_MAGIC)
    test_fail("initrd magic is 0x%x, expected 0x%x", header->magic, HVT_INITRD_MAGIC);
  if (header->total_size != info->initrd_size)
    test_fail("initrd says it is %u bytes, the boot protocol says %lu", header->total_size, info->initrd_size);
  uint32_t payload = header->total_size - (uint32_t)sizeof(*header);
  uint32_t sum = hvt_fnv1a((const uint8_t*)(header + 1), payload);
  if (sum != header->payload_fnv1a) test_fail("initrd checksum 0x%x, expected 0x%x", sum, header->payload_fnv1a);
  print("initrd checksum ok (0x%08x)\n", sum);
}

static void check_memory_map(const struct boot_info* info) {
  if (info->range_count == 0) test_fail("the memory map is empty");
  if (info->ranges_truncated) test_fail("the memory map has more than %d entries", BOOT_INFO_MAX_RANGES);
  uint64_t usable = 0;
  for (uint32_t i = 0; i < info->range_count; i++) {
    const struct mem_range* r = &info->ranges[i];
    print("mem: 0x%016lx-0x%016lx %s (%u)\n", r->addr, r->addr + r->size - 1, type_name(r->type), r->type);
    if (r->type != MEM_USABLE) continue;
    if (r->size > UINT64_MAX - r->addr) test_fail("range at 0x%lx wraps around", r->addr);
    if (r->addr < 0x100000 && r->addr + r->size > 0xa0000)
      test_fail("usable range 0x%lx+0x%lx overlaps the legacy hole 0xA0000-0xFFFFF", r->addr, r->size);
    usable += r->size;
  }
  if (!usable_covers(info, 0, 0x1000)) test_fail("no usable RAM at address 0");
  if (!usable_covers(info, 0x100000, 0x100000)) test_fail("no usable RAM at 1 MiB");
  const uint64_t expected = (uint64_t)HVT_BOOTINFO_MEMORY_MIB * MIB;
  const uint64_t slack = (uint64_t)HVT_BOOTINFO_MEMORY_SLACK_MIB * MIB;
  print("usable: %lu KiB of %lu KiB\n", usable >> 10, expected >> 10);
  if (usable > expected || usable < expected - slack)
    test_fail("usable RAM is %lu KiB, expected %lu KiB minus at most %lu KiB", usable >> 10, expected >> 10,
              slack >> 10);
  if (info->has_mem_lower_upper) {
    /* Multiboot: KiB below 640 KiB and above 1 MiB, which must agree with the map. */
    print("mem_lower %u KiB, mem_upper %u KiB\n", info->mem_lower_kib, info->mem_upper_kib);
    if (info->mem_lower_kib > 640 || info->mem_lower_kib < 512)
      test_fail("mem_lower %u KiB is implausible", info->mem_lower_kib);
    uint64_t upper = (uint64_t)info->mem_upper_kib << 10;
    if (upper + MIB > expected || upper + MIB < expected - slack)
      test_fail("mem_upper %u KiB does not match %u MiB of RAM", info->mem_upper_kib, HVT_BOOTINFO_MEMORY_MIB);
  } else if (info->format == BOOT_MULTIBOOT) {
    test_fail("multiboot_info lacks mem_lower/mem_upper (flag 0), which the header asked for");
  }
}

enum {
  RFLAGS_TF = 1u << 8,
  RFLAGS_IF = 1u << 9,
  RFLAGS_VM = 1u << 17,
  CR0_PE = 1u << 0,
  CR0_ET = 1u << 4,
  CR0_PG = 1u << 31,
  CR4_PAE = 1u << 5,
  EFER_LME = 1u << 8,
  EFER_LMA = 1u << 10,
};

static void check_entry_state(const struct boot_info* info) {
  const struct entry_state* e = &boot_entry_state;
  print("entry: cs 0x%lx ds 0x%lx es 0x%lx ss 0x%lx rflags 0x%lx cr0 0x%lx cr3 0x%lx cr4 0x%lx efer 0x%lx\n", e->cs,
        e->ds, e->es, e->ss, e->rflags, e->cr0, e->cr3, e->cr4, e->efer);
  if (e->rflags & (RFLAGS_IF | RFLAGS_TF | RFLAGS_VM))
    test_fail("entered with RFLAGS 0x%lx: IF, TF and VM must be clear", e->rflags);
  const bool long_mode = info->format == BOOT_ELF64 || (info->format == BOOT_BZIMAGE && (e->efer & EFER_LMA));
  if (long_mode) {
    if (!(e->cr0 & CR0_PG) || !(e->cr0 & CR0_PE) || !(e->cr4 & CR4_PAE) ||
        (e->efer & (EFER_LME | EFER_LMA)) != (EFER_LME | EFER_LMA))
      test_fail("64-bit entry without long mode: cr0 0x%lx cr4 0x%lx efer 0x%lx", e->cr0, e->cr4, e->efer);
  } else if (!(e->cr0 & CR0_PE) || (e->cr0 & CR0_PG)) {
    test_fail("32-bit entry needs protected mode with paging off: cr0 0x%lx", e->cr0);
  }
  if (info->format == BOOT_BZIMAGE && info->raw_pointer) {
    /* type_of_loader is an obligatory write for the boot loader (0xFF: undefined). */
    uint8_t loader = *(volatile const uint8_t*)(uintptr_t)(info->raw_pointer + 0x210);
    if (loader == 0) test_fail("boot_params.hdr.type_of_loader is 0: the loader must set it (0xFF if unregistered)");
  }
  if (info->format == BOOT_BZIMAGE) {
    /* Both boot protocol entries: __BOOT_CS 0x10, __BOOT_DS 0x18 in DS, ES, SS. */
    if (e->cs != 0x10 || e->ds != 0x18 || e->es != 0x18 || e->ss != 0x18)
      test_fail("Linux boot protocol wants CS 0x10 and DS/ES/SS 0x18, got CS 0x%lx DS 0x%lx ES 0x%lx SS 0x%lx", e->cs,
                e->ds, e->es, e->ss);
  }
  if (info->format == BOOT_PVH) {
    /* PVH ABI: of CR0's writable bits only PE is set (ET is read-only); CR4 is all clear. */
    uint64_t extra = e->cr0 & ~(uint64_t)(CR0_PE | CR0_ET);
    if (extra != 0 || e->cr4 != 0)
      test_fail("PVH entry wants CR0 = PE and CR4 = 0, got cr0 0x%lx (extra bits 0x%lx) cr4 0x%lx", e->cr0, extra,
                e->cr4);
  }
  print("entry state ok (%s mode)\n", long_mode ? "64-bit" : "32-bit");
}

/* Walks the loader's page tables (still in CR3 for 64-bit entries): each
 * probe address must be mapped present, writable and identity. */
static void check_identity_map(void) {
  static const uint64_t probes[] = {0x0, 0x100000, 0x3fff000, 0x9fc00000, 0xfee00000, 0xfffff000};
  const uint64_t addr_mask = 0x000ffffffffff000ull;
  for (unsigned i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
    uint64_t va = probes[i];
    uint64_t table = read_cr3() & addr_mask;
    uint64_t pa = ~0ull;
    for (int level = 3; level >= 0; level--) {
      if (table >= (1ull << 32)) test_fail("page table at 0x%lx is above 4 GiB", table);
      uint64_t entry = ((volatile const uint64_t*)(uintptr_t)table)[(va >> (12 + 9 * level)) & 511];
      if ((entry & 3) != 3)
        test_fail("0x%lx is not mapped present+writable (level %d entry 0x%lx)", va, level + 1, entry);
      if (level == 0 || (level <= 2 && (entry & 0x80))) {
        uint64_t page_mask = (1ull << (12 + 9 * level)) - 1;
        pa = (entry & addr_mask & ~page_mask) | (va & page_mask);
        break;
      }
      table = entry & addr_mask;
    }
    if (pa != va) test_fail("0x%lx maps to 0x%lx, not to itself", va, pa);
  }
  print("identity map of the low 4 GiB ok\n");
}

void test_main(const struct boot_info* info) {
  print("bootinfo: format %s, boot information at 0x%lx\n", info->format_name, info->raw_pointer);
  if (boot_entry_state.efer & EFER_LMA) check_identity_map();
  if (info->format == BOOT_ELF64 && info->raw_pointer == 0) {
    print("elf64: no boot information (RSI = 0), as the plain ELF64 protocol has none\n");
  } else {
    if (info->error) test_fail("%s", info->error);
    check_cmdline(info);
    check_initrd(info);
    check_memory_map(info);
  }
  /* Last, so a strict-ABI detail does not hide the checks above. */
  check_entry_state(info);
  test_pass();
}
