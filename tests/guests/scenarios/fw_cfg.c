/* Reads the machine's facts through fw_cfg (ports 0x510/0x511 and DMA at
 * 0x514), the way firmware does, and checks them against what the
 * integration test configured, which it passes on the command line as
 * "fwcfg.cpus=N fwcfg.ram_mib=M": the signature and ID (DMA bit), the CPU
 * count and maximum, the RAM size, and etc/e820 found through the file
 * directory. etc/e820 is read twice, through the data port and through DMA,
 * and its usable RAM must add up to the machine's; with "fwcfg.e820=boot"
 * it must also equal the memory map the boot protocol (PVH) handed over, as
 * hostvisor promises (QEMU's PVH map is SeaBIOS's, which differs). A DMA
 * write to a read-only item must come back with the error bit. With
 * "fwcfg.opt=TEXT" the user file opt/hostvisor/test (--fw-cfg) must hold
 * exactly TEXT. Last, the SMBIOS tables a guest finds in the F-segment
 * (the "_SM_" or "_SM3_" entry point) must list one processor per CPU and
 * map exactly the machine's RAM. */
#include "hvtest.h"

const char test_scenario[] = "fw_cfg";

enum { FW_CFG_SELECTOR = 0x510, FW_CFG_DATA = 0x511, FW_CFG_DMA_HIGH = 0x514, FW_CFG_DMA_LOW = 0x518 };
enum {
  KEY_SIGNATURE = 0x00,
  KEY_ID = 0x01,
  KEY_RAM_SIZE = 0x03,
  KEY_NB_CPUS = 0x05,
  KEY_MAX_CPUS = 0x0f,
  KEY_FILE_DIR = 0x19
};
enum { DMA_ERROR = 1, DMA_READ = 2, DMA_SKIP = 4, DMA_SELECT = 8, DMA_WRITE = 16 };
enum { ID_DMA = 2 };

static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }

static uint32_t be32(uint32_t v) { return __builtin_bswap32(v); }
static uint64_t be64(uint64_t v) { return __builtin_bswap64(v); }

static void port_read(uint16_t key, void* buffer, uint32_t length) {
  outw(FW_CFG_SELECTOR, key);
  uint8_t* out = buffer;
  for (uint32_t i = 0; i < length; i++) out[i] = inb(FW_CFG_DATA);
}

struct dma_access {
  uint32_t control, length;
  uint64_t address;
} __attribute__((packed, aligned(16)));

static volatile struct dma_access dma_descriptor;

/* Runs one descriptor; returns its control field when the device is done. */
static uint32_t dma(uint32_t control, void* buffer, uint32_t length) {
  dma_descriptor.control = be32(control);
  dma_descriptor.length = be32(length);
  dma_descriptor.address = be64((uint64_t)(uintptr_t)buffer);
  compiler_barrier();
  const uint64_t at = (uint64_t)(uintptr_t)&dma_descriptor;
  outl(FW_CFG_DMA_HIGH, be32((uint32_t)(at >> 32)));
  outl(FW_CFG_DMA_LOW, be32((uint32_t)at));
  for (int spins = 0; spins < 1000000; spins++) {
    const uint32_t c = be32(dma_descriptor.control);
    if (c == 0 || (c & DMA_ERROR)) return c;
  }
  test_fail("a DMA request never completed");
}

/* The value of "name=<decimal>" on the command line. */
static uint64_t cmdline_number(const char* cmdline, const char* name) {
  const char* at = strstr(cmdline, name);
  if (!at) test_fail("the command line \"%s\" lacks %s", cmdline, name);
  at += strlen(name);
  uint64_t value = 0;
  if (*at < '0' || *at > '9') test_fail("%s has no number", name);
  while (*at >= '0' && *at <= '9') value = value * 10 + (uint64_t)(*at++ - '0');
  return value;
}

struct e820_entry {
  uint64_t address, length;
  uint32_t type;
} __attribute__((packed));

#define MAX_E820 32
static struct e820_entry e820_port[MAX_E820], e820_dma[MAX_E820];
static uint8_t directory[4 + 256 * 64];

/* Finds a file in the directory (read through the port): its key and size. */
static bool find_file(const char* name, uint16_t* key, uint32_t* size) {
  uint32_t count;
  port_read(KEY_FILE_DIR, &count, 4);
  count = be32(count);
  if (count > 256) test_fail("the file directory claims %u files", count);
  for (uint32_t i = 0; i < count; i++) {
    struct {
      uint32_t size;
      uint16_t select, reserved;
      char name[56];
    } __attribute__((packed)) entry;
    for (uint32_t b = 0; b < sizeof(entry); b++) ((uint8_t*)&entry)[b] = inb(FW_CFG_DATA);
    entry.name[55] = 0;
    print("fw_cfg: file %s: key 0x%04x, %u bytes\n", entry.name, __builtin_bswap16(entry.select), be32(entry.size));
    if (strcmp(entry.name, name) == 0) {
      *key = __builtin_bswap16(entry.select);
      *size = be32(entry.size);
      return true;
    }
  }
  return false;
}

static uint8_t byte_sum(const volatile uint8_t* p, uint32_t n) {
  uint8_t s = 0;
  for (uint32_t i = 0; i < n; i++) s = (uint8_t)(s + p[i]);
  return s;
}

/* Finds the SMBIOS entry point the way Linux's dmi_scan does and checks the
 * processors (type 4) and mapped RAM (type 19) in its tables. */
static void check_smbios(uint64_t want_cpus, uint64_t want_ram) {
  uint64_t table = 0, length = 0;
  for (uint64_t at = 0xf0000; at < 0x100000 && !table; at += 16) {
    const volatile uint8_t* e = (const volatile uint8_t*)(uintptr_t)at;
    if (e[0] == '_' && e[1] == 'S' && e[2] == 'M' && e[3] == '_' && e[5] >= 0x1f && byte_sum(e, e[5]) == 0) {
      length = (uint64_t)e[0x16] | (uint64_t)e[0x17] << 8;
      table = (uint64_t)e[0x18] | (uint64_t)e[0x19] << 8 | (uint64_t)e[0x1a] << 16 | (uint64_t)e[0x1b] << 24;
      print("smbios: 2.x entry point at 0x%lx, %lu bytes of tables at 0x%lx\n", at, length, table);
    } else if (e[0] == '_' && e[1] == 'S' && e[2] == 'M' && e[3] == '3' && e[4] == '_' && e[6] >= 0x18 &&
               byte_sum(e, e[6]) == 0) {
      length = (uint64_t)e[0x0c] | (uint64_t)e[0x0d] << 8 | (uint64_t)e[0x0e] << 16 | (uint64_t)e[0x0f] << 24;
      memcpy(&table, (const void*)(uintptr_t)(at + 0x10), 8);
      print("smbios: 3.x entry point at 0x%lx, at most %lu bytes of tables at 0x%lx\n", at, length, table);
    }
  }
  if (!table) test_fail("no SMBIOS entry point with a valid checksum in 0xF0000-0xFFFFF");
  if (table >= (1ull << 32) || length > (1u << 20)) test_fail("SMBIOS tables at 0x%lx, %lu bytes", table, length);
  const volatile uint8_t* t = (const volatile uint8_t*)(uintptr_t)table;
  uint64_t at = 0, processors = 0, mapped = 0;
  bool ended = false;
  while (at + 4 <= length && !ended) {
    const uint8_t type = t[at], size = t[at + 1];
    if (size < 4 || at + size > length) test_fail("SMBIOS structure at +%lu has length %u", at, size);
    if (type == 4) processors++;
    if (type == 19 && size >= 0x0f) {
      const uint32_t start =
          (uint32_t)t[at + 4] | (uint32_t)t[at + 5] << 8 | (uint32_t)t[at + 6] << 16 | (uint32_t)t[at + 7] << 24;
      const uint32_t end =
          (uint32_t)t[at + 8] | (uint32_t)t[at + 9] << 8 | (uint32_t)t[at + 10] << 16 | (uint32_t)t[at + 11] << 24;
      if (start != 0xffffffffu) mapped += ((uint64_t)end - start + 1) * 1024;
    }
    ended = type == 127;
    /* Skip the strings: up to and past the double NUL. */
    at += size;
    while (at + 1 < length && (t[at] != 0 || t[at + 1] != 0)) at++;
    at += 2;
  }
  if (!ended) test_fail("the SMBIOS tables have no end-of-table structure");
  print("smbios: %lu processors, %lu MiB mapped\n", processors, mapped >> 20);
  if (processors != want_cpus)
    test_fail("SMBIOS lists %lu processors, the machine has %lu CPUs", processors, want_cpus);
  if (mapped != want_ram) test_fail("SMBIOS maps %lu bytes of RAM, the machine has %lu", mapped, want_ram);
}

void test_main(const struct boot_info* info) {
  if (info->error) test_fail("boot information: %s", info->error);
  if (!info->cmdline) test_fail("no command line: the test passes the expected configuration there");
  const uint64_t want_cpus = cmdline_number(info->cmdline, "fwcfg.cpus=");
  const uint64_t want_ram = cmdline_number(info->cmdline, "fwcfg.ram_mib=") << 20;

  char signature[5] = {0};
  port_read(KEY_SIGNATURE, signature, 4);
  if (memcmp(signature, "QEMU", 4) != 0) test_fail("signature \"%s\", expected \"QEMU\"", signature);
  uint32_t id = 0;
  port_read(KEY_ID, &id, 4);
  print("fw_cfg: signature %s, id 0x%x\n", signature, id);
  if (!(id & ID_DMA)) test_fail("the ID lacks the DMA bit");
  char dma_signature[9] = {0};
  for (int i = 0; i < 8; i++) dma_signature[i] = (char)inb((uint16_t)(FW_CFG_DMA_HIGH + i));
  if (memcmp(dma_signature, "QEMU CFG", 8) != 0) test_fail("DMA register reads \"%s\"", dma_signature);

  /* The CPU counts through the port, the RAM size through DMA. */
  uint16_t cpus = 0, max_cpus = 0;
  port_read(KEY_NB_CPUS, &cpus, 2);
  port_read(KEY_MAX_CPUS, &max_cpus, 2);
  uint64_t ram = 0;
  uint32_t c = dma((uint32_t)KEY_RAM_SIZE << 16 | DMA_SELECT | DMA_READ, &ram, sizeof(ram));
  print("fw_cfg: %u CPUs (max %u), RAM %lu MiB\n", cpus, max_cpus, ram >> 20);
  if (c != 0) test_fail("DMA read of the RAM size: control 0x%x", c);
  if (cpus != want_cpus) test_fail("fw_cfg says %u CPUs, the machine has %lu", cpus, want_cpus);
  if (max_cpus != want_cpus) test_fail("fw_cfg says at most %u CPUs, the machine has %lu", max_cpus, want_cpus);
  if (ram != want_ram) test_fail("fw_cfg says %lu bytes of RAM, the machine has %lu", ram, want_ram);

  /* The directory through DMA must match the port's. */
  c = dma((uint32_t)KEY_FILE_DIR << 16 | DMA_SELECT | DMA_READ, directory, sizeof(directory));
  if (c != 0) test_fail("DMA read of the file directory: control 0x%x", c);
  uint16_t key;
  uint32_t size;
  if (!find_file("etc/e820", &key, &size)) test_fail("no etc/e820 in the file directory");
  uint32_t dma_count;
  memcpy(&dma_count, directory, 4);
  if (be32(dma_count) == 0) test_fail("the directory read through DMA is empty");
  if (size % sizeof(struct e820_entry) != 0 || size > sizeof(e820_port))
    test_fail("etc/e820 is %u bytes, not a whole number of 20-byte entries (at most %d)", size, MAX_E820);
  const uint32_t entries = size / (uint32_t)sizeof(struct e820_entry);
  port_read(key, e820_port, size);
  /* Skip the first entry, then read the rest, to exercise SKIP. */
  c = dma((uint32_t)key << 16 | DMA_SELECT | DMA_SKIP, NULL, sizeof(struct e820_entry));
  if (c != 0) test_fail("DMA skip: control 0x%x", c);
  c = dma(DMA_READ, &e820_dma[1], size - (uint32_t)sizeof(struct e820_entry));
  if (c != 0) test_fail("DMA read of etc/e820: control 0x%x", c);
  e820_dma[0] = e820_port[0];
  if (memcmp(e820_port, e820_dma, size) != 0) test_fail("etc/e820 differs between the port and DMA");

  const bool same_as_boot_map = strstr(info->cmdline, "fwcfg.e820=boot") != NULL;
  if (same_as_boot_map && entries != info->range_count)
    test_fail("etc/e820 has %u entries, the PVH memory map %u", entries, info->range_count);
  uint64_t usable = 0;
  for (uint32_t i = 0; i < entries; i++) {
    const struct e820_entry* e = &e820_port[i];
    const struct mem_range* r = &info->ranges[i];
    print("fw_cfg: e820 %016lx-%016lx type %u\n", e->address, e->address + e->length - 1, e->type);
    if (same_as_boot_map && (e->address != r->addr || e->length != r->size || e->type != r->type))
      test_fail("etc/e820 entry %u is %lx+%lx type %u; the boot map says %lx+%lx type %u", i, e->address, e->length,
                e->type, r->addr, r->size, r->type);
    if (e->type == MEM_USABLE) usable += e->length;
  }
  if (usable > want_ram || usable < want_ram - (4u << 20))
    test_fail("etc/e820 has %lu bytes of usable RAM for a %lu-byte machine", usable, want_ram);

  /* A user file, when the test added one. */
  const char* opt = strstr(info->cmdline, "fwcfg.opt=");
  if (opt) {
    opt += strlen("fwcfg.opt=");
    uint32_t want = 0;
    while (opt[want] && opt[want] != ' ') want++;
    if (!find_file("opt/hostvisor/test", &key, &size)) test_fail("no opt/hostvisor/test in the file directory");
    static char text[256];
    if (size != want || size >= sizeof(text)) test_fail("opt/hostvisor/test is %u bytes, expected %u", size, want);
    c = dma((uint32_t)key << 16 | DMA_SELECT | DMA_READ, text, size);
    if (c != 0) test_fail("DMA read of opt/hostvisor/test: control 0x%x", c);
    if (memcmp(text, opt, want) != 0) test_fail("opt/hostvisor/test holds \"%s\"", text);
    print("fw_cfg: opt/hostvisor/test holds the text the host gave\n");
  }

  /* Nothing here is writable: a DMA write fails, and does not change it. */
  c = dma((uint32_t)KEY_SIGNATURE << 16 | DMA_SELECT | DMA_WRITE, "XXXX", 4);
  if (!(c & DMA_ERROR)) test_fail("a DMA write to the signature did not fail (control 0x%x)", c);
  port_read(KEY_SIGNATURE, signature, 4);
  if (memcmp(signature, "QEMU", 4) != 0) test_fail("the signature changed to \"%s\"", signature);
  check_smbios(want_cpus, want_ram);
  test_pass();
}
