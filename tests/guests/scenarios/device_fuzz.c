/* The device fuzzer: from fuzz.seed=N, fuzz.ops=M on the command line, a
 * splitmix64 stream drives M random operations against every device of the
 * machine — port I/O (legacy ports, I/O BARs), MMIO (memory BARs with their
 * MSI-X tables and PBAs, the virtio-mmio slots, the IOAPIC, the local APIC's
 * harmless registers, the HPET and flash addresses), PCI configuration
 * through 0xCF8/0xCFC and ECAM, fw_cfg (with DMA), and hostile virtqueues on
 * every virtio device of either transport (device_fuzz_virtio.c).
 *
 * The host must survive all of it; the kernel only has to survive itself.
 * It runs with interrupts off (nothing a device sends can reach it but
 * NMI/INIT/SMI, which it never lets an MSI, IOAPIC or LAPIC entry carry),
 * never waits for a device, and never lets a device or itself write below
 * the fuzz window (device_fuzz.h). What it leaves out on purpose is in
 * tests/guests/README.md: the run-ending registers (debug exit, i8042 and
 * 0xCF9 and ACPI resets, SLP_EN), the UART's line settings (restored after
 * each write: the console must keep working), the LAPIC's ICR, SVR and
 * LINT entries, partial writes to address registers (always whole dwords).
 *
 * The op stream depends only on the seed (never on values read back), so a
 * seed names a run; devices answering at their own pace can still make two
 * runs of one seed differ on the host side. `fuzz.progress=K` prints a line
 * every K ops (default 1000). */
#include "device_fuzz.h"

const char test_scenario[] = "device_fuzz";

extern const char __image_end[];

/* ---- PRNG ---- */
static uint64_t prng_state;
uint64_t fuzz_next(void) {
  uint64_t z = (prng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void fuzz_fill(void* p, uint64_t n) {
  uint8_t* b = p;
  while (n >= 8) {
    const uint64_t v = fuzz_next();
    memcpy(b, &v, 8);
    b += 8;
    n -= 8;
  }
  if (n) {
    const uint64_t v = fuzz_next();
    memcpy(b, &v, n);
  }
}

struct fuzz_stats fuzz_stats;
bool fuzz_tracing;
uint64_t fuzz_window_start, fuzz_window_end, fuzz_ram_end;
/* fw_cfg DMA: the descriptor in its first page, data in the 60 KiB after. */
static uint64_t fuzz_dma_area;
struct fuzz_function fuzz_functions[FUZZ_MAX_FUNCTIONS];
unsigned fuzz_function_count;
uint64_t fuzz_mmio_base[FUZZ_MAX_MMIO];
unsigned fuzz_mmio_count;

/* ---- addresses ---- */
enum {
  ECAM_BASE = 0xb0000000u,
  IOAPIC_BASE = 0xfec00000u,
  HPET_BASE = 0xfed00000u,
  FLASH_BASE = 0xffc00000u, /* the top 4 MiB, where a CFI flash and ROMs sit */
};
static const uint32_t mmio_spots[] = {ECAM_BASE, 0xc0000000u, 0xfeb00000u, IOAPIC_BASE,
                                      HPET_BASE, 0xfee00000u, FLASH_BASE,  0xfffff000u};

uint64_t fuzz_hostile_address(uint64_t lo, uint64_t hi) {
  const uint64_t pick = fuzz_below(100);
  if (pick < 70 && hi > lo) {
    /* Inside the caller's region, mostly aligned. */
    uint64_t a = lo + fuzz_below(hi - lo);
    if (fuzz_chance(80)) a &= ~15ull;
    return a < lo ? lo : a;
  }
  if (pick < 78) return mmio_spots[fuzz_below(sizeof mmio_spots / sizeof mmio_spots[0])] + fuzz_below(0x1000);
  if (pick < 84) return fuzz_ram_end - fuzz_below(4096); /* straddles the end of RAM */
  if (pick < 90) return fuzz_ram_end + fuzz_below(1ull << 30);
  if (pick < 94) return (1ull << 32) + fuzz_below(1ull << 36);
  if (pick < 97) return 0xfffffffffffff000ull + fuzz_below(0x1000); /* wraps */
  /* Anything at all, unless it lands below the window. */
  const uint64_t a = fuzz_next();
  return a < fuzz_window_start ? a | (1ull << 40) : a;
}

uint32_t fuzz_safe_low32(void) {
  if (fuzz_chance(60))
    return (uint32_t)(fuzz_window_start + FUZZ_BAR_AREA_OFFSET +
                      fuzz_below(fuzz_window_end - fuzz_window_start - FUZZ_BAR_AREA_OFFSET));
  if (fuzz_chance(50)) return mmio_spots[fuzz_below(sizeof mmio_spots / sizeof mmio_spots[0])];
  const uint32_t v = (uint32_t)fuzz_next();
  return v < fuzz_window_start ? v | 0x80000000u : v;
}

uint32_t fuzz_length(void) {
  switch (fuzz_below(8)) {
    case 0: return 0;
    case 1: return (uint32_t)fuzz_below(16);
    case 2: return (uint32_t)fuzz_below(600);
    case 3: return 4096;
    case 4: return (uint32_t)fuzz_below(70000);
    case 5: return 0xffffffffu - (uint32_t)fuzz_below(16);
    case 6: return 0x80000000u;
    default: return (uint32_t)fuzz_next();
  }
}

bool fuzz_cpu_may_touch(uint64_t address, uint64_t size) {
  return address >= fuzz_window_start && address + size <= (1ull << 32) && address + size > address;
}

/* ---- command line ---- */
static uint64_t cmdline_number(const char* cmdline, const char* name, uint64_t fallback) {
  const char* at = cmdline ? strstr(cmdline, name) : NULL;
  if (!at) return fallback;
  at += strlen(name);
  uint64_t v = 0;
  bool any = false;
  if (at[0] == '0' && (at[1] == 'x' || at[1] == 'X')) {
    for (at += 2;; at++, any = true) {
      const char c = *at;
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) break;
      v = v * 16 + (uint64_t)d;
    }
  } else {
    for (; *at >= '0' && *at <= '9'; at++, any = true) v = v * 10 + (uint64_t)(*at - '0');
  }
  if (!any) test_fail("%s needs a number", name);
  return v;
}

/* ---- the window ---- */
static void choose_window(const struct boot_info* info) {
  const uint64_t image_end = (uint64_t)(uintptr_t)__image_end;
  uint64_t best_start = 0, best_end = 0;
  for (uint32_t i = 0; i < info->range_count; i++) {
    const struct mem_range* r = &info->ranges[i];
    if (r->type != MEM_USABLE) continue;
    uint64_t end = r->addr + r->size;
    if (end > 0xb0000000u) end = 0xb0000000u;
    if (r->addr <= image_end && end > best_end) {
      best_start = r->addr;
      best_end = end;
    }
  }
  if (best_end < image_end + (16u << 20))
    test_fail("no usable RAM range of 16 MiB above the kernel (ends at 0x%lx): give --memory 64M or more", best_end);
  (void)best_start;
  /* The upper half, 2 MiB aligned, at least 4 MiB above the kernel. */
  uint64_t start = best_end / 2;
  if (start < image_end + (4u << 20)) start = image_end + (4u << 20);
  fuzz_window_start = (start + 0x1fffff) & ~0x1fffffull;
  fuzz_window_end = best_end & ~0xfffull;
  fuzz_ram_end = best_end;
  if (fuzz_window_end <= fuzz_window_start + FUZZ_BAR_AREA_OFFSET + (4u << 20))
    test_fail("the fuzz window 0x%lx-0x%lx is too small: give more --memory", fuzz_window_start, fuzz_window_end);
}

/* ---- PCI ---- */
enum { CONFIG_ADDRESS = 0xcf8, CONFIG_DATA = 0xcfc };
enum { PCI_COMMAND_IO = 0x1, PCI_HEADER_TYPE = 0x0e, PCI_ROM = 0x30 };
enum {
  PCI_CAP_VIRTIO_CFG_TYPE = 3,
  VIRTIO_CAP_COMMON = 1,
  VIRTIO_CAP_NOTIFY = 2,
  VIRTIO_CAP_ISR = 3,
  VIRTIO_CAP_DEVICE = 4,
  VIRTIO_CAP_PCI_CFG = 5
};

static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static uint32_t port_in(uint16_t port, unsigned width) {
  return width == 1 ? inb(port) : width == 2 ? inw(port) : inl(port);
}
static void port_out(uint16_t port, unsigned width, uint32_t v) {
  if (width == 1)
    outb(port, (uint8_t)v);
  else if (width == 2)
    outw(port, (uint16_t)v);
  else
    outl(port, v);
}

static const struct fuzz_function* function_at(uint8_t bus, uint8_t slot, uint8_t fn) {
  for (unsigned i = 0; i < fuzz_function_count; i++) {
    const struct pci_function* f = &fuzz_functions[i].f;
    if (f->bus == bus && f->slot == slot && f->function == fn) return &fuzz_functions[i];
  }
  return NULL;
}

static uint64_t size_bar(const struct pci_function* f, unsigned bar, bool io, bool is64) {
  const uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
  const uint32_t low = pci_read32(f, reg);
  pci_write32(f, reg, 0xffffffffu);
  uint64_t mask = pci_read32(f, reg) & (io ? ~3u : ~0xfu);
  pci_write32(f, reg, low);
  if (is64) {
    const uint32_t high = pci_read32(f, reg + 4);
    pci_write32(f, reg + 4, 0xffffffffu);
    mask |= (uint64_t)pci_read32(f, reg + 4) << 32;
    pci_write32(f, reg + 4, high);
  } else {
    mask |= io ? 0xffffffffffff0000ull : 0xffffffff00000000ull;
  }
  if ((uint32_t)mask == 0) return 0;
  return ~mask + 1;
}

static void discover_function(const struct pci_function* f) {
  if (fuzz_function_count == FUZZ_MAX_FUNCTIONS) return;
  struct fuzz_function* fn = &fuzz_functions[fuzz_function_count++];
  memset(fn, 0, sizeof *fn);
  fn->f = *f;
  fn->common_bar = fn->notify_bar = fn->isr_bar = fn->device_bar = -1;
  const uint16_t command = pci_read16(f, PCI_COMMAND);
  pci_write16(f, PCI_COMMAND, command & (uint16_t) ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
  const uint8_t header = pci_read8(f, PCI_HEADER_TYPE) & 0x7f;
  const unsigned bars = header == 0 ? 6 : header == 1 ? 2 : 0;
  for (unsigned b = 0; b < bars; b++) {
    const uint32_t low = pci_read32(f, (uint16_t)(PCI_BAR0 + 4 * b));
    struct fuzz_bar* bar = &fn->bar[b];
    bar->io = low & 1;
    bar->is64 = !bar->io && ((low >> 1) & 3) == 2 && b < 5;
    bar->size = size_bar(f, b, bar->io, bar->is64);
    if (bar->size) {
      if (bar->io) {
        bar->address = low & ~3u;
      } else {
        pci_write16(f, PCI_COMMAND, command);
        bar->address = pci_bar_address(f, b); /* places it below 4 GiB if needed */
        pci_write16(f, PCI_COMMAND, command & (uint16_t) ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
      }
    }
    if (bar->is64) b++;
  }
  pci_write16(f, PCI_COMMAND, (uint16_t)(command | PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_BUS_MASTER));
  for (uint8_t cap = pci_find_capability(f, PCI_CAP_MSIX, 0); cap; cap = 0) {
    const uint16_t control = pci_read16(f, cap + 2);
    const uint32_t table = pci_read32(f, cap + 4);
    fn->msix_cap = cap;
    fn->msix_bar = table & 7;
    fn->msix_offset = table & ~7u;
    fn->msix_bytes = ((control & 0x7ffu) + 1) * 16;
  }
  if (f->vendor != VIRTIO_PCI_VENDOR) return;
  for (uint8_t cap = pci_find_capability(f, PCI_CAP_VENDOR, 0); cap;
       cap = pci_find_capability(f, PCI_CAP_VENDOR, cap)) {
    const uint8_t type = pci_read8(f, cap + PCI_CAP_VIRTIO_CFG_TYPE);
    const uint8_t bar = pci_read8(f, cap + 4);
    const uint32_t offset = pci_read32(f, cap + 8);
    if (type == VIRTIO_CAP_PCI_CFG && !fn->pci_cfg_cap) fn->pci_cfg_cap = cap;
    if (bar > 5) continue;
    if (type == VIRTIO_CAP_COMMON && fn->common_bar < 0) fn->common_bar = (int8_t)bar, fn->common_offset = offset;
    if (type == VIRTIO_CAP_NOTIFY && fn->notify_bar < 0) {
      fn->notify_bar = (int8_t)bar;
      fn->notify_offset = offset;
      fn->notify_multiplier = pci_read32(f, cap + 16);
    }
    if (type == VIRTIO_CAP_ISR && fn->isr_bar < 0) fn->isr_bar = (int8_t)bar, fn->isr_offset = offset;
    if (type == VIRTIO_CAP_DEVICE && fn->device_bar < 0) fn->device_bar = (int8_t)bar, fn->device_offset = offset;
  }
}

static void discover_pci(void) {
  for (uint8_t slot = 0; slot < 32; slot++) {
    for (uint8_t func = 0; func < 8; func++) {
      struct pci_function f = {.bus = 0, .slot = slot, .function = func};
      const uint32_t id = pci_read32(&f, PCI_VENDOR_ID);
      if ((uint16_t)id == 0xffff) {
        if (func == 0) break;
        continue;
      }
      f.vendor = (uint16_t)id;
      f.device = (uint16_t)(id >> 16);
      discover_function(&f);
      if (func == 0 && !(pci_read8(&f, PCI_HEADER_TYPE) & 0x80)) break;
    }
  }
}

uint64_t fuzz_bar_now(const struct fuzz_function* fn, unsigned bar) {
  const struct fuzz_bar* b = &fn->bar[bar];
  if (!b->size || b->io) return 0;
  const uint16_t command = pci_read16(&fn->f, PCI_COMMAND);
  if (!(command & PCI_COMMAND_MEMORY)) return 0;
  const uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
  uint64_t address = pci_read32(&fn->f, reg) & ~0xfull;
  if (b->is64) address |= (uint64_t)pci_read32(&fn->f, reg + 4) << 32;
  address &= ~(b->size - 1);
  return fuzz_cpu_may_touch(address, b->size) ? address : 0;
}

/* Puts every BAR back where boot found it and turns decoding on: without
 * it the run would soon be all "nothing decodes here". */
void fuzz_repair_function(const struct fuzz_function* fn);
void fuzz_repair_function(const struct fuzz_function* fn) {
  const struct pci_function* f = &fn->f;
  pci_write16(f, PCI_COMMAND, 0);
  for (unsigned b = 0; b < 6; b++) {
    const struct fuzz_bar* bar = &fn->bar[b];
    if (!bar->size) continue;
    const uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * b);
    pci_write32(f, reg, (uint32_t)bar->address);
    if (bar->is64) pci_write32(f, reg + 4, (uint32_t)(bar->address >> 32));
  }
  pci_write16(f, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_BUS_MASTER);
}

static void repair_all(void) {
  for (unsigned i = 0; i < fuzz_function_count; i++) fuzz_repair_function(&fuzz_functions[i]);
  fuzz_stats.repair++;
}

/* ---- virtio-mmio: as Linux finds them, from virtio_mmio.device= and ACPI ---- */
enum { VIRTIO_MMIO_MAGIC = 0x74726976u /* "virt" */ };

static void add_mmio(uint64_t base) {
  if (base < fuzz_window_start || base >= (1ull << 32)) return;
  for (unsigned i = 0; i < fuzz_mmio_count; i++)
    if (fuzz_mmio_base[i] == base) return;
  if (fuzz_mmio_count == FUZZ_MAX_MMIO) return;
  if (*(volatile uint32_t*)(uintptr_t)base != VIRTIO_MMIO_MAGIC) return;
  fuzz_mmio_base[fuzz_mmio_count++] = base;
}

/* virtio_mmio.device=<size>@<base>:<irq>[:<id>] (Linux's syntax). */
static void mmio_from_cmdline(const char* cmdline) {
  static const char key[] = "virtio_mmio.device=";
  for (const char* at = cmdline ? strstr(cmdline, key) : NULL; at; at = strstr(at + 1, key)) {
    const char* p = strstr(at, "@");
    if (!p) break;
    p++;
    uint64_t base = 0;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) p += 2;
    for (;; p++) {
      const char c = *p;
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) break;
      base = base * 16 + (uint64_t)d;
    }
    add_mmio(base);
  }
}

static uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool table_ok(const uint8_t* t, const char* signature) {
  if (!t || (uint64_t)(uintptr_t)t >= (1ull << 32) || memcmp(t, signature, 4) != 0) return false;
  const uint32_t length = rd32(t + 4);
  if (length < 36 || length > (1u << 20)) return false;
  uint8_t sum = 0;
  for (uint32_t i = 0; i < length; i++) sum = (uint8_t)(sum + t[i]);
  return sum == 0;
}

/* The DSDT's LNRO0005 devices: the Memory32Fixed descriptor (0x86, length
 * 9) that follows each _HID string within its device gives the base. */
static void mmio_from_acpi(void) {
  const uint8_t* rsdp = NULL;
  for (uint64_t at = 0xe0000; at < 0x100000 && !rsdp; at += 16)
    if (memcmp((const void*)(uintptr_t)at, "RSD PTR ", 8) == 0) rsdp = (const uint8_t*)(uintptr_t)at;
  if (!rsdp) return;
  const uint8_t* root = rsdp[15] >= 2 ? (const uint8_t*)(uintptr_t)(rd32(rsdp + 24) | (uint64_t)rd32(rsdp + 28) << 32)
                                      : (const uint8_t*)(uintptr_t)rd32(rsdp + 16);
  const bool xsdt = rsdp[15] >= 2;
  if (!table_ok(root, xsdt ? "XSDT" : "RSDT")) return;
  const uint32_t entry = xsdt ? 8 : 4;
  for (uint32_t off = 36; off + entry <= rd32(root + 4); off += entry) {
    const uint64_t address = xsdt ? rd32(root + off) | (uint64_t)rd32(root + off + 4) << 32 : rd32(root + off);
    const uint8_t* fadt = (const uint8_t*)(uintptr_t)address;
    if (!table_ok(fadt, "FACP")) continue;
    uint64_t dsdt_address = rd32(fadt + 40);
    if (rd32(fadt + 4) >= 148 && (rd32(fadt + 140) | (uint64_t)rd32(fadt + 144) << 32))
      dsdt_address = rd32(fadt + 140) | (uint64_t)rd32(fadt + 144) << 32;
    const uint8_t* dsdt = (const uint8_t*)(uintptr_t)dsdt_address;
    if (!table_ok(dsdt, "DSDT")) return;
    const uint32_t length = rd32(dsdt + 4);
    for (uint32_t i = 36; i + 9 <= length; i++) {
      if (memcmp(dsdt + i, "LNRO0005", 9) != 0) continue;
      for (uint32_t j = i + 9; j + 12 <= length && j < i + 96; j++) {
        if (dsdt[j] == 0x86 && dsdt[j + 1] == 9 && dsdt[j + 2] == 0) {
          add_mmio(rd32(dsdt + j + 4));
          break;
        }
      }
    }
    return;
  }
}

/* ---- virtio devices ---- */
struct fuzz_virtio fuzz_virtios[FUZZ_MAX_VIRTIO];
unsigned fuzz_virtio_count;

/* The balloon's slices come first, at the bottom of the window: devices
 * write past the end of their buffers only upwards (a long buffer near a
 * slice's end), so nothing but this kernel writes into a balloon's data,
 * whose every word is a page number the balloon gives back. */
static void add_virtio(bool mmio, unsigned index, uint32_t type, uint64_t* slice) {
  if (fuzz_virtio_count == FUZZ_MAX_VIRTIO) return;
  fuzz_virtios[fuzz_virtio_count++] = (struct fuzz_virtio){.mmio = mmio, .index = index, .type = type, .slice = *slice};
  *slice += FUZZ_SLICE;
}

static void discover_virtio(void) {
  uint64_t slice = fuzz_window_start;
  for (int balloon_pass = 1; balloon_pass >= 0; balloon_pass--) {
    for (unsigned i = 0; i < fuzz_function_count; i++) {
      const struct fuzz_function* fn = &fuzz_functions[i];
      if (fn->f.vendor != VIRTIO_PCI_VENDOR || fn->f.device < 0x1040 || fn->common_bar < 0) continue;
      const uint32_t type = fn->f.device - 0x1040u;
      if ((type == 5 /* balloon */) == balloon_pass) add_virtio(false, i, type, &slice);
    }
    for (unsigned i = 0; i < fuzz_mmio_count; i++) {
      const uint32_t type = *(volatile uint32_t*)(uintptr_t)(fuzz_mmio_base[i] + 8);
      if (type == 0) continue; /* an empty slot */
      if ((type == 5 /* balloon */) == balloon_pass) add_virtio(true, i, type, &slice);
    }
  }
  fuzz_dma_area = fuzz_window_start + FUZZ_MAX_VIRTIO * FUZZ_SLICE;
}

/* ---- port I/O ---- */
struct port_range {
  uint16_t base, count;
};
static const struct port_range legacy_ports[] = {
    {0x20, 2}, {0x40, 4},  {0x60, 1},  {0x61, 1},   {0x64, 1},   {0x70, 2},  {0x80, 1},
    {0xa0, 2}, {0x3f8, 8}, {0x402, 1}, {0x510, 12}, {0x600, 20}, {0x4d0, 2},
};

/* Adjusts a port write so it cannot end the run or take the console;
 * returns false to leave it out. */
static bool port_write_allowed(uint16_t port, unsigned* width, uint32_t* value) {
  const uint32_t end = (uint32_t)port + *width;
  /* debug exit; 0xCF8-0xCFF go through the config op (sanitized); 0x92 bit 0 is a reset. */
  if (end > 0xf4 && port < 0xf8) return false;
  if (end > 0xcf8 && port < 0xd00) return false;
  if (end > 0x92 && port < 0x93) return false;
  if (end > 0x514 && port < 0x51c) return false; /* fw_cfg DMA: the fw_cfg op does it with safe addresses */
  if (end > 0x60 && port < 0x65) {
    *width = 1;
    if (port == 0x64) {
      if (*value >= 0xf0) *value |= 1;            /* pulsing output line 0 resets the CPU */
      if ((*value & 0xff) == 0xd1) *value = 0xd2; /* "write output port": its data byte could reset */
    }
  }
  if (end > 0x604 && port < 0x608) { /* PM1a_CNT: SLP_EN; 0x606: the ACPI reset register */
    *width = 1;
    if (port == 0x606 || port == 0x607) return false;
    if (port == 0x605) *value &= ~0x20u;
  }
  if (end > 0x3f8 && port < 0x400) { /* COM1: never the data register (console output) */
    *width = 1;
    if (port == 0x3f8) return false;
  }
  return true;
}

static void restore_console(void) {
  outb(COM1 + 3, 0x03); /* 8N1, DLAB off */
  outb(COM1 + 4, 0x03); /* DTR, RTS, no loopback */
  outb(COM1 + 1, 0x00);
}

static void op_port(void) {
  uint16_t port;
  const uint64_t pick = fuzz_below(100);
  if (pick < 60) {
    const struct port_range* r = &legacy_ports[fuzz_below(sizeof legacy_ports / sizeof legacy_ports[0])];
    port = (uint16_t)(r->base + fuzz_below(r->count));
  } else if (pick < 85) {
    /* An I/O BAR where it decodes now. */
    if (!fuzz_function_count) return;
    const struct fuzz_function* fn = &fuzz_functions[fuzz_below(fuzz_function_count)];
    const unsigned b = (unsigned)fuzz_below(6);
    if (!fn->bar[b].size || !fn->bar[b].io) {
      port = (uint16_t)(0xc000 + fuzz_below(0x4000));
    } else {
      const uint32_t now = pci_read32(&fn->f, (uint16_t)(PCI_BAR0 + 4 * b)) & ~3u;
      port = (uint16_t)(now + fuzz_below(fn->bar[b].size));
    }
  } else {
    port = (uint16_t)fuzz_next();
  }
  static const unsigned widths[] = {1, 2, 4};
  unsigned width = widths[fuzz_below(3)];
  uint32_t value = (uint32_t)fuzz_next();
  const bool write = fuzz_chance(50);
  fuzz_stats.port++;
  if (!write) {
    if (port >= 0xcf8 && port < 0xd00) return; /* harmless, but keep 0xCF8 ours */
    (void)port_in(port, width);
    return;
  }
  if (!port_write_allowed(port, &width, &value)) {
    fuzz_stats.skipped++;
    return;
  }
  FUZZ_TRACE("port out 0x%x/%u = 0x%x\n", port, width, value);
  port_out(port, width, value);
  if (port + width > 0x3f8 && port < 0x400) restore_console();
}

/* ---- MMIO ---- */
static unsigned random_width(void) {
  static const unsigned widths[] = {1, 2, 4, 4, 4, 8};
  return widths[fuzz_below(6)];
}

/* An MSI-X table dword: the address may be anything (a non-0xFEExxxxx
 * address is dropped); the data never carries SMI/NMI/INIT/ExtINT delivery,
 * which would reach this CPU with interrupts off. */
static uint32_t msix_dword(unsigned index_in_entry) {
  const uint32_t v = (uint32_t)fuzz_next();
  switch (index_in_entry) {
    case 0: return fuzz_chance(70) ? 0xfee00000u | (v & 0xff00cu) : v;
    case 2: return (v & ~0x700u) | (uint32_t)(fuzz_below(2) << 8); /* fixed or lowest priority */
    default: return v;
  }
}

/* A write into a region whose registers hold addresses or MSI messages is
 * made whole-dword and given a safe value. `kind`: what the dword is. */
enum { PLAIN = 0, ADDRESS_LOW, ADDRESS_HIGH, MSIX_ADDRESS, MSIX_DATA };

static void write_dword_kind(uint64_t address, unsigned kind) {
  uint32_t v;
  switch (kind) {
    case ADDRESS_LOW: v = fuzz_ring_address_low32(); break;
    case MSIX_ADDRESS: v = msix_dword(0); break;
    case MSIX_DATA: v = msix_dword(2); break;
    default: v = (uint32_t)fuzz_next(); break;
  }
  mmio_write(address & ~3ull, 4, v);
}

/* The kind of the dword at `offset` of a PCI function's BAR. */
static unsigned bar_dword_kind(const struct fuzz_function* fn, unsigned bar, uint64_t offset) {
  if (fn->msix_cap && bar == fn->msix_bar && offset >= fn->msix_offset && offset < fn->msix_offset + fn->msix_bytes) {
    const unsigned dword = (unsigned)((offset - fn->msix_offset) / 4) % 4;
    return dword == 0 ? MSIX_ADDRESS : dword == 2 ? MSIX_DATA : PLAIN;
  }
  if (fn->common_bar == (int)bar && offset >= fn->common_offset + 0x20 && offset < fn->common_offset + 0x38)
    return ((offset - fn->common_offset - 0x20) / 4) % 2 == 0 ? ADDRESS_LOW : ADDRESS_HIGH;
  return PLAIN;
}

static unsigned mmio_slot_dword_kind(uint64_t offset) {
  if (offset >= 0x40 && offset < 0x44) return ADDRESS_LOW; /* legacy QueuePFN */
  if (offset >= 0x80 && offset < 0xa8) return ((offset - 0x80) / 4) % 2 == 0 ? ADDRESS_LOW : ADDRESS_HIGH;
  return PLAIN;
}

static void mmio_access(uint64_t base, uint64_t size, unsigned (*kind_of)(const void*, uint64_t), const void* ctx) {
  unsigned width = random_width();
  if (width > size) width = 1;
  uint64_t offset = fuzz_below(size - width + 1);
  if (fuzz_chance(85)) offset &= ~(uint64_t)(width - 1);
  fuzz_stats.mmio++;
  if (fuzz_chance(45)) {
    (void)mmio_read(base + offset, width);
    return;
  }
  /* A write: every dword it touches must be PLAIN, or it becomes one safe dword write. */
  if (kind_of) {
    for (uint64_t d = offset & ~3ull; d < offset + width; d += 4) {
      const unsigned kind = kind_of(ctx, d);
      if (kind != PLAIN) {
        FUZZ_TRACE("mmio 0x%lx: kind %u\n", base + d, kind);
        write_dword_kind(base + d, kind);
        return;
      }
    }
  }
  const uint64_t v = fuzz_next();
  FUZZ_TRACE("mmio 0x%lx/%u = 0x%lx\n", base + offset, width, v);
  mmio_write(base + offset, width, v);
}

struct bar_ctx {
  const struct fuzz_function* fn;
  unsigned bar;
};
static unsigned bar_kind(const void* ctx, uint64_t offset) {
  const struct bar_ctx* c = ctx;
  return bar_dword_kind(c->fn, c->bar, offset);
}
static unsigned slot_kind(const void* ctx, uint64_t offset) {
  (void)ctx;
  return mmio_slot_dword_kind(offset);
}

/* IOAPIC: IOREGSEL at 0, IOWIN at 0x10, EOI at 0x40. A redirection entry's
 * low dword keeps fixed/lowest-priority delivery. */
static void op_ioapic(void) {
  volatile uint32_t* ioapic = (volatile uint32_t*)(uintptr_t)IOAPIC_BASE;
  const uint32_t index = fuzz_chance(90) ? (uint32_t)fuzz_below(0x40) : (uint32_t)fuzz_next() & 0xff;
  ioapic[0] = index;
  if (fuzz_chance(40)) {
    (void)ioapic[4];
    return;
  }
  uint32_t v = (uint32_t)fuzz_next();
  if (index >= 0x10 && index < 0x40 && index % 2 == 0) v = (v & ~0x700u) | (uint32_t)(fuzz_below(2) << 8);
  if (fuzz_chance(90))
    ioapic[4] = v;
  else
    ioapic[0x10] = v; /* EOI register */
}

/* Local APIC: reads anywhere; writes only to registers that cannot stop
 * this CPU or its console: TPR, EOI, ESR, the timer, LVT entries other than
 * LINT0/LINT1 kept to fixed delivery. */
static void op_lapic(void) {
  volatile uint32_t* lapic = (volatile uint32_t*)(uintptr_t)LAPIC_BASE;
  if (fuzz_chance(60)) {
    (void)lapic[fuzz_below(0x40) * 4];
    return;
  }
  static const uint16_t writable[] = {0x80, 0xb0, 0x280, 0x320, 0x330, 0x340, 0x370, 0x380, 0x3e0};
  const uint16_t reg = writable[fuzz_below(sizeof writable / sizeof writable[0])];
  uint32_t v = (uint32_t)fuzz_next();
  if (reg >= 0x320 && reg <= 0x370) v &= ~0x700u; /* fixed delivery */
  if (reg == 0x380 && v < 100000) v += 100000;    /* no timer storm */
  lapic[reg / 4] = v;
}

static void op_mmio(void) {
  const uint64_t pick = fuzz_below(100);
  if (pick < 50 && fuzz_function_count) {
    const struct fuzz_function* fn = &fuzz_functions[fuzz_below(fuzz_function_count)];
    const unsigned b = (unsigned)fuzz_below(6);
    const uint64_t base = fuzz_bar_now(fn, b);
    if (!base) {
      fuzz_stats.skipped++;
      return;
    }
    const struct bar_ctx ctx = {fn, b};
    mmio_access(base, fn->bar[b].size, bar_kind, &ctx);
  } else if (pick < 75 && fuzz_mmio_count) {
    const uint64_t base = fuzz_mmio_base[fuzz_below(fuzz_mmio_count)];
    mmio_access(base, fuzz_chance(90) ? 0x200 : 0x1000, slot_kind, NULL);
  } else if (pick < 85) {
    op_ioapic();
    fuzz_stats.mmio++;
  } else if (pick < 90) {
    op_lapic();
    fuzz_stats.mmio++;
  } else if (pick < 95) {
    mmio_access(fuzz_chance(50) ? HPET_BASE : FLASH_BASE + fuzz_below(0x3ff000), 0x1000, NULL, NULL);
  } else {
    /* Anywhere in the PCI hole: reads only (a write could land on a BAR the fuzzer moved). */
    const uint64_t a = 0xc0000000u + (fuzz_below(0x3eb00000u) & ~7ull);
    (void)mmio_read(a, random_width());
    fuzz_stats.mmio++;
  }
}

/* ---- PCI configuration ---- */
static uint32_t hostile_bar_value(const struct fuzz_function* fn, unsigned b, bool high) {
  const struct fuzz_bar* bar = &fn->bar[b];
  if (high) return fuzz_chance(70) ? (uint32_t)(bar->address >> 32) : (uint32_t)fuzz_next();
  if (fuzz_chance(20)) return 0xffffffffu; /* sizing */
  if (bar->io) {
    uint32_t port = fuzz_chance(40) ? (uint32_t)bar->address : (uint32_t)fuzz_next() & 0xfffc;
    const uint32_t end = port + (uint32_t)bar->size;
    if ((end > 0xf4 && port < 0xf8) || (end > 0x3f8 && port < 0x400) || (end > 0xcf8 && port < 0xd00) ||
        (end > 0x92 && port < 0x93) || (end > 0x60 && port < 0x65) || (end > 0x600 && port < 0x614))
      port = (uint32_t)bar->address;
    return port | 1;
  }
  uint64_t a;
  switch (fuzz_below(6)) {
    case 0: a = bar->address; break;
    case 1: /* into the window, above the slices the CPU writes rings and descriptors to */
      a = fuzz_window_start + FUZZ_BAR_AREA_OFFSET +
          fuzz_below(fuzz_window_end - fuzz_window_start - FUZZ_BAR_AREA_OFFSET);
      break;
    case 2: a = mmio_spots[fuzz_below(sizeof mmio_spots / sizeof mmio_spots[0])]; break;
    case 3: { /* over another function's BAR */
      const struct fuzz_function* other = &fuzz_functions[fuzz_below(fuzz_function_count)];
      a = other->bar[fuzz_below(6)].address;
      break;
    }
    case 4: a = 0xc0000000u + fuzz_below(0x3f000000u); break;
    default: a = fuzz_next() & 0xffffffffu; break;
  }
  const uint64_t aligned = a & ~(bar->size - 1) & 0xfffffff0u;
  /* Never over RAM below the window (the kernel). With a 64-bit BAR's high
   * half it might be above 4 GiB, but this write cannot know. */
  if (aligned < fuzz_window_start || aligned + bar->size > (1ull << 32)) a = bar->address;
  return (uint32_t)a | (uint32_t)(fuzz_next() & 0xf);
}

/* Makes a config write safe, or returns false to leave it out. Whole
 * dwords for BARs; none into a virtio PCI_CFG window (it reaches the
 * common configuration's queue addresses a byte at a time). */
static bool config_write_allowed(const struct fuzz_function* fn, uint16_t* offset, unsigned* width, uint32_t* value) {
  if (!fn) return true; /* nothing there */
  const uint16_t start = *offset, end = (uint16_t)(*offset + *width);
  if (end > PCI_BAR0 && start < PCI_BAR0 + 24) {
    const unsigned b = (unsigned)((start < PCI_BAR0 ? PCI_BAR0 : start) - PCI_BAR0) / 4;
    *offset = (uint16_t)(PCI_BAR0 + 4 * b);
    *width = 4;
    if (fn->bar[b].size) {
      *value = hostile_bar_value(fn, b, false);
    } else if (b > 0 && fn->bar[b - 1].is64) {
      *value = hostile_bar_value(fn, b - 1, true);
    } else {
      *value = fuzz_safe_low32();
    }
    return true;
  }
  if (end > PCI_ROM && start < PCI_ROM + 4) {
    *offset = PCI_ROM;
    *width = 4;
    *value = (fuzz_safe_low32() & ~0x7ffu) | (uint32_t)fuzz_below(2);
    return true;
  }
  if (fn->pci_cfg_cap && end > fn->pci_cfg_cap + 16 && start < fn->pci_cfg_cap + 20) return false;
  /* MSI (capability 5) address/data: none of hostvisor's functions has MSI;
   * its message would need the same care as MSI-X. */
  return true;
}

static void op_config(void) {
  uint8_t bus = 0, slot, func;
  const struct fuzz_function* fn = NULL;
  if (fuzz_function_count && fuzz_chance(90)) {
    fn = &fuzz_functions[fuzz_below(fuzz_function_count)];
    slot = fn->f.slot;
    func = fn->f.function;
  } else {
    bus = fuzz_chance(70) ? 0 : (uint8_t)fuzz_next();
    slot = (uint8_t)fuzz_below(32);
    func = (uint8_t)fuzz_below(8);
    fn = bus == 0 ? function_at(0, slot, func) : NULL;
  }
  const bool ecam = fuzz_chance(40);
  uint16_t offset;
  const uint64_t pick = fuzz_below(100);
  if (pick < 45)
    offset = (uint16_t)fuzz_below(0x40);
  else if (pick < 85 || !ecam)
    offset = (uint16_t)(0x40 + fuzz_below(0xc0));
  else
    offset = (uint16_t)(0x100 + fuzz_below(0xf00));
  static const unsigned widths[] = {1, 2, 4};
  unsigned width = widths[fuzz_below(3)];
  offset &= (uint16_t) ~(width - 1);
  uint32_t value = (uint32_t)fuzz_next();
  const bool write = fuzz_chance(55);
  fuzz_stats.config++;
  if (write && !config_write_allowed(fn, &offset, &width, &value)) {
    fuzz_stats.skipped++;
    return;
  }
  if (write)
    FUZZ_TRACE("config %02x:%02x.%x +0x%x/%u = 0x%x (%s)\n", bus, slot, func, offset, width, value,
               ecam ? "ecam" : "cf8");
  if (ecam) {
    const uint64_t address = ECAM_BASE + ((uint64_t)bus << 20 | (uint64_t)slot << 15 | (uint64_t)func << 12 | offset);
    if (write)
      mmio_write(address, width, value);
    else
      (void)mmio_read(address, width);
    return;
  }
  /* Mechanism #1: sometimes with the enable bit off (the data port then decodes nothing). */
  const uint32_t enable = fuzz_chance(95) ? 0x80000000u : 0;
  outl(CONFIG_ADDRESS, enable | (uint32_t)bus << 16 | (uint32_t)slot << 11 | (uint32_t)func << 8 | (offset & 0xfc));
  const uint16_t port = (uint16_t)(CONFIG_DATA + (offset & 3));
  if (write)
    port_out(port, width, value);
  else
    (void)port_in(port, width);
}

/* ---- fw_cfg ---- */
enum { FW_CFG_SELECTOR = 0x510, FW_CFG_DATA = 0x511, FW_CFG_DMA_HIGH = 0x514, FW_CFG_DMA_LOW = 0x518 };

static uint32_t bswap32(uint32_t v) { return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24); }

static void op_fw_cfg(void) {
  fuzz_stats.fw_cfg++;
  const uint16_t key = fuzz_chance(70) ? (uint16_t)fuzz_below(0x30) : (uint16_t)fuzz_next();
  switch (fuzz_below(3)) {
    case 0: {
      outw(FW_CFG_SELECTOR, key);
      const unsigned n = (unsigned)fuzz_below(64);
      for (unsigned i = 0; i < n; i++) (void)inb(FW_CFG_DATA);
      break;
    }
    case 1:
      outw(FW_CFG_SELECTOR, key);
      outb(FW_CFG_DATA, (uint8_t)fuzz_next());
      break;
    default: {
      /* DMA: the descriptor in the window's first page, the data into the
       * 60 KiB after it (or anywhere hostile that is not the kernel). */
      uint64_t descriptor = fuzz_dma_area;
      if (fuzz_chance(10)) descriptor = fuzz_hostile_address(fuzz_dma_area, fuzz_dma_area + 4096 - 16);
      if (fuzz_cpu_may_touch(descriptor, 16) && descriptor + 16 <= fuzz_dma_area + 4096) {
        volatile uint32_t* d = (volatile uint32_t*)(uintptr_t)descriptor;
        const uint32_t control = (uint32_t)key << 16 | ((uint32_t)fuzz_next() & 0x1f);
        const uint64_t target = fuzz_hostile_address(fuzz_dma_area + 4096, fuzz_dma_area + 16 * 4096);
        FUZZ_TRACE("fw_cfg dma at 0x%lx: control 0x%x target 0x%lx\n", descriptor, control, target);
        d[0] = bswap32(control);
        d[1] = bswap32(fuzz_chance(80) ? (uint32_t)fuzz_below(8192) : fuzz_length());
        d[2] = bswap32((uint32_t)(target >> 32));
        d[3] = bswap32((uint32_t)target);
      }
      outl(FW_CFG_DMA_HIGH, bswap32((uint32_t)(descriptor >> 32)));
      outl(FW_CFG_DMA_LOW, bswap32((uint32_t)descriptor));
      break;
    }
  }
}

/* ---- the run ---- */
static void print_progress(uint64_t done, uint64_t total) {
  print(
      "device_fuzz: op %lu/%lu (port %lu, mmio %lu, config %lu, virtqueue %lu, fw_cfg %lu, repair %lu, skipped %lu)\n",
      done, total, fuzz_stats.port, fuzz_stats.mmio, fuzz_stats.config, fuzz_stats.virtqueue, fuzz_stats.fw_cfg,
      fuzz_stats.repair, fuzz_stats.skipped);
}

void test_main(const struct boot_info* info) {
  idt_install();
  interrupts_off();
  const uint64_t seed = cmdline_number(info->cmdline, "fuzz.seed=", 1);
  const uint64_t ops = cmdline_number(info->cmdline, "fuzz.ops=", 1000);
  uint64_t progress = cmdline_number(info->cmdline, "fuzz.progress=", 1000);
  if (progress == 0) progress = ops ? ops : 1;
  /* fuzz.trace=K: a line per op from op K on, to find the one that hurt. */
  const uint64_t trace_from = cmdline_number(info->cmdline, "fuzz.trace=", ~0ull);
  prng_state = seed;
  choose_window(info);
  discover_pci();
  mmio_from_cmdline(info->cmdline);
  mmio_from_acpi();
  discover_virtio();
  print(
      "device_fuzz: seed %lu, %lu ops, window 0x%lx-0x%lx, %u PCI functions, %u virtio-mmio slots, %u virtio devices:",
      seed, ops, fuzz_window_start, fuzz_window_end, fuzz_function_count, fuzz_mmio_count, fuzz_virtio_count);
  for (unsigned i = 0; i < fuzz_virtio_count; i++)
    print(" %s%u", fuzz_virtios[i].mmio ? "mmio:" : "pci:", fuzz_virtios[i].type);
  print("\n");

  for (uint64_t op = 0; op < ops; op++) {
    const uint64_t pick = fuzz_below(100);
    fuzz_tracing = op >= trace_from;
    if (fuzz_tracing)
      print("device_fuzz: op %lu: %s\n", op,
            pick < 14   ? "port"
            : pick < 38 ? "mmio"
            : pick < 52 ? "config"
            : pick < 56 ? "fw_cfg"
            : pick < 57 ? "repair"
                        : "virtqueue");
    if (pick < 14)
      op_port();
    else if (pick < 38)
      op_mmio();
    else if (pick < 52)
      op_config();
    else if (pick < 56)
      op_fw_cfg();
    else if (pick < 57)
      repair_all();
    else if (fuzz_virtio_count) {
      fuzz_virtqueue(&fuzz_virtios[fuzz_below(fuzz_virtio_count)]);
      fuzz_stats.virtqueue++;
    }
    /* Now and then everything goes back in place, so later ops reach devices. */
    if (op % 64 == 63) repair_all();
    if ((op + 1) % progress == 0 && op + 1 < ops) print_progress(op + 1, ops);
  }
  fuzz_tracing = false;
  repair_all();
  fuzz_virtio_reset_all();
  restore_console();
  print("\n");
  print_progress(ops, ops);
  test_pass();
}
