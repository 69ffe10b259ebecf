/* Finds the VM generation ID (VMGENID) through the ACPI tables as a guest
 * does, prints it, and reports when the host announces a new one.
 *
 * The walk: the RSDP (scanned for in 0xE0000-0xFFFFF, checksums checked) ->
 * the XSDT -> the FADT (its GPE0 block) and the DSDT and SSDTs. In their AML
 * it looks for the device whose _HID or _CID is the string "VM_GEN_COUNTER"
 * (what Linux's vmgenid driver binds to), takes its ADDR method, which must
 * be `Return (Package (2) {low, high})` with integer constants (hostvisor's
 * and QEMU's shape once patched; a full AML interpreter is out of scope for
 * a test kernel), and the GPE method (_Exx or _Lxx in \_GPE) that does
 * Notify (<that device>, 0x80), whose number is the GPE0 bit to enable.
 *
 * Then it prints "vmgenid ready" and serves the host: each time the GPE's
 * status bit is set it clears it and prints "vmgenid notified: <id>"; a '?'
 * on COM1 prints "vmgenid query: <id> notifications <n>", a 'q' ends with
 * PASS. The ID is printed as its 16 bytes in memory order, in hex. */
#include "hvtest.h"

const char test_scenario[] = "vmgenid";

enum { UART_RBR = 0, UART_LSR = 5, LSR_DATA_READY = 0x01 };

static uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum(const uint8_t* p, uint32_t length) {
  uint8_t s = 0;
  for (uint32_t i = 0; i < length; i++) s = (uint8_t)(s + p[i]);
  return s;
}

/* A table with a standard header and a valid checksum, or NULL. */
static const uint8_t* table_at(uint64_t address, const char* signature) {
  if (address == 0 || address >= 0x100000000ull) return NULL;
  const uint8_t* t = (const uint8_t*)(uintptr_t)address;
  if (signature && memcmp(t, signature, 4) != 0) return NULL;
  const uint32_t length = rd32(t + 4);
  if (length < 36 || length > (1u << 20) || sum(t, length) != 0) return NULL;
  return t;
}

static const uint8_t* find_rsdp(void) {
  for (uint64_t at = 0xe0000; at < 0x100000; at += 16) {
    const uint8_t* p = (const uint8_t*)(uintptr_t)at;
    if (memcmp(p, "RSD PTR ", 8) == 0 && sum(p, 20) == 0 && p[15] >= 2 && sum(p, 36) == 0) return p;
  }
  return NULL;
}

/* ---- just enough AML ---- */

/* A PkgLength at p: its value (counting its own bytes), and its size in *width. */
static uint32_t pkg_length(const uint8_t* p, uint32_t* width) {
  const uint32_t extra = p[0] >> 6;
  *width = extra + 1;
  if (extra == 0) return p[0] & 0x3f;
  uint32_t length = p[0] & 0x0f;
  for (uint32_t i = 0; i < extra; i++) length |= (uint32_t)p[1 + i] << (4 + 8 * i);
  return length;
}

/* An integer constant at *p (advanced past it); false if it is not one. */
static bool aml_integer(const uint8_t** p, const uint8_t* end, uint64_t* value) {
  const uint8_t* q = *p;
  if (q >= end) return false;
  unsigned size;
  switch (q[0]) {
    case 0x00: *value = 0; *p = q + 1; return true;
    case 0x01: *value = 1; *p = q + 1; return true;
    case 0xff: *value = ~0ull; *p = q + 1; return true;
    case 0x0a: size = 1; break;
    case 0x0b: size = 2; break;
    case 0x0c: size = 4; break;
    case 0x0e: size = 8; break;
    default: return false;
  }
  if (q + 1 + size > end) return false;
  *value = 0;
  for (unsigned i = 0; i < size; i++) *value |= (uint64_t)q[1 + i] << (8 * i);
  *p = q + 1 + size;
  return true;
}

/* The last NameSeg of the NameString at p (the device a path ends in). */
static const uint8_t* last_name_seg(const uint8_t* p, const uint8_t* end) {
  while (p < end && (*p == '\\' || *p == '^')) p++;
  unsigned segs = 1;
  if (p < end && *p == 0x2e) {
    segs = 2;
    p++;
  } else if (p + 1 < end && *p == 0x2f) {
    segs = p[1];
    p += 2;
  }
  if (segs == 0 || p + 4 * segs > end) return NULL;
  return p + 4 * (segs - 1);
}

static const uint8_t* find_bytes(const uint8_t* from, const uint8_t* end, const void* what, uint32_t length) {
  for (const uint8_t* p = from; p + length <= end; p++)
    if (memcmp(p, what, length) == 0) return p;
  return NULL;
}

struct vmgenid_device {
  char name[5];
  uint64_t address;
  bool found;
  int gpe; /* -1 until the notifying GPE method is found */
};

/* In one table's AML: the VM_GEN_COUNTER device and its ADDR package. */
static void find_device(const uint8_t* aml, const uint8_t* end, struct vmgenid_device* out) {
  static const char kId[] = "\x0dVM_GEN_COUNTER";
  const uint8_t* id = find_bytes(aml, end, kId, sizeof kId); /* with the NUL */
  if (!id || id - aml < 5 || id[-5] != 0x08 || (memcmp(id - 4, "_CID", 4) != 0 && memcmp(id - 4, "_HID", 4) != 0))
    return;
  /* The innermost Device (ExtOp 0x5B 0x82) whose body holds the name. */
  for (const uint8_t* d = id - 5; d >= aml; d--) {
    if (d[0] != 0x5b || d[1] != 0x82) continue;
    uint32_t width;
    const uint32_t length = pkg_length(d + 2, &width);
    const uint8_t* device_end = d + 2 + length;
    if (device_end <= id || device_end > end) continue;
    const uint8_t* name = d + 2 + width;
    memcpy(out->name, name, 4);
    out->name[4] = 0;
    /* Method (ADDR, 0) { Return (Package (2) { low, high }) } */
    for (const uint8_t* m = name + 4; m + 8 < device_end; m++) {
      if (m[0] != 0x14) continue;
      uint32_t mwidth;
      const uint32_t mlength = pkg_length(m + 1, &mwidth);
      const uint8_t* method_end = m + 1 + mlength;
      const uint8_t* q = m + 1 + mwidth;
      if (method_end > device_end || q + 5 > method_end || memcmp(q, "ADDR", 4) != 0) continue;
      q += 5; /* name, flags */
      if (q + 4 > method_end || q[0] != 0xa4 || q[1] != 0x12) test_fail("ADDR does not return a constant package");
      uint32_t pwidth;
      (void)pkg_length(q + 2, &pwidth);
      q += 2 + pwidth;
      if (*q++ != 2) test_fail("ADDR's package does not have two elements");
      uint64_t low, high;
      if (!aml_integer(&q, method_end, &low) || !aml_integer(&q, method_end, &high) || low > 0xffffffffu ||
          high > 0xffffffffu)
        test_fail("ADDR's package does not hold two DWORD constants");
      out->address = high << 32 | low;
      out->found = true;
      return;
    }
    test_fail("the VM_GEN_COUNTER device %s has no ADDR method", out->name);
  }
}

/* In one table's AML: Method (_Exx or _Lxx) { Notify (<device>, 0x80) }. */
static void find_gpe(const uint8_t* aml, const uint8_t* end, struct vmgenid_device* out) {
  for (const uint8_t* m = aml; m + 8 < end; m++) {
    if (m[0] != 0x14) continue;
    uint32_t width;
    const uint32_t length = pkg_length(m + 1, &width);
    const uint8_t* method_end = m + 1 + length;
    const uint8_t* q = m + 1 + width;
    if (method_end > end || q + 7 > method_end || q[0] != '_' || (q[1] != 'E' && q[1] != 'L')) continue;
    int bit = 0;
    for (int i = 2; i < 4; i++) {
      const char c = (char)q[i];
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (digit < 0) bit = -1000;
      bit = bit * 16 + digit;
    }
    if (bit < 0) continue;
    q += 5; /* name, flags */
    if (q[0] != 0x86) continue;
    const uint8_t* seg = last_name_seg(q + 1, method_end);
    if (!seg || memcmp(seg, out->name, 4) != 0) continue;
    const uint8_t* value = seg + 4;
    uint64_t notify;
    if (aml_integer(&value, method_end, &notify) && notify == 0x80) {
      out->gpe = bit;
      return;
    }
  }
}

static const volatile uint8_t* id_bytes;

static void print_id(void) {
  for (int i = 0; i < 16; i++) print("%02x", id_bytes[i]);
}

void test_main(const struct boot_info* info) {
  (void)info;
  const uint8_t* rsdp = find_rsdp();
  if (!rsdp) test_fail("no RSDP in 0xE0000-0xFFFFF");
  const uint8_t* xsdt = table_at(rd64(rsdp + 24), "XSDT");
  if (!xsdt) test_fail("the RSDP's XSDT is missing or damaged");

  const uint8_t* aml_tables[16];
  unsigned aml_count = 0;
  uint32_t gpe0_block = 0, gpe0_length = 0;
  for (uint32_t at = 36; at + 8 <= rd32(xsdt + 4); at += 8) {
    const uint8_t* t = table_at(rd64(xsdt + at), NULL);
    if (!t) test_fail("XSDT entry %u is damaged", (at - 36) / 8);
    if (memcmp(t, "FACP", 4) == 0) {
      const uint64_t dsdt = rd32(t + 4) >= 148 && rd64(t + 140) ? rd64(t + 140) : rd32(t + 40);
      const uint8_t* d = table_at(dsdt, "DSDT");
      if (!d) test_fail("the FADT's DSDT is missing or damaged");
      if (aml_count < 16) aml_tables[aml_count++] = d;
      gpe0_block = rd32(t + 80);
      gpe0_length = t[92];
    } else if (memcmp(t, "SSDT", 4) == 0 && aml_count < 16) {
      aml_tables[aml_count++] = t;
    }
  }
  if (aml_count == 0) test_fail("no DSDT");

  struct vmgenid_device dev = {.gpe = -1};
  for (unsigned i = 0; i < aml_count && !dev.found; i++)
    find_device(aml_tables[i] + 36, aml_tables[i] + rd32(aml_tables[i] + 4), &dev);
  if (!dev.found) test_fail("no device with the ID VM_GEN_COUNTER");
  for (unsigned i = 0; i < aml_count && dev.gpe < 0; i++)
    find_gpe(aml_tables[i] + 36, aml_tables[i] + rd32(aml_tables[i] + 4), &dev);
  if (dev.gpe < 0) test_fail("no GPE method notifies %s", dev.name);
  if (dev.address % 8 != 0 || dev.address + 16 > 0x100000000ull) test_fail("ID address 0x%lx", dev.address);
  if (gpe0_block == 0 || gpe0_block > 0xffff || (unsigned)dev.gpe >= gpe0_length / 2 * 8)
    test_fail("GPE %d is not in the FADT's GPE0 block (port 0x%x, %u bytes)", dev.gpe, gpe0_block, gpe0_length);

  id_bytes = (const volatile uint8_t*)(uintptr_t)dev.address;
  const uint16_t status_port = (uint16_t)(gpe0_block + dev.gpe / 8);
  const uint16_t enable_port = (uint16_t)(gpe0_block + gpe0_length / 2 + dev.gpe / 8);
  const uint8_t mask = (uint8_t)(1u << (dev.gpe % 8));
  outb(enable_port, (uint8_t)(inb(enable_port) | mask));
  print("vmgenid: device %s, ID at 0x%lx, GPE0 bit %d\n", dev.name, dev.address, dev.gpe);
  print("vmgenid id: ");
  print_id();
  print("\nvmgenid ready\n");

  unsigned notifications = 0;
  for (;;) {
    if (inb(status_port) & mask) {
      outb(status_port, mask); /* write one to clear */
      notifications++;
      print("vmgenid notified: ");
      print_id();
      print("\n");
    }
    if (inb(COM1 + UART_LSR) & LSR_DATA_READY) {
      const char c = (char)inb(COM1 + UART_RBR);
      if (c == '?') {
        print("vmgenid query: ");
        print_id();
        print(" notifications %u\n", notifications);
      } else if (c == 'q') {
        test_pass();
      }
    }
  }
}
