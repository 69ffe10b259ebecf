/* PCI configuration space through mechanism #1, and the parts of the header
 * a driver needs: finding functions, capabilities, memory BARs. */
#include "pci.h"

enum { CONFIG_ADDRESS = 0xcf8, CONFIG_DATA = 0xcfc };

static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) {
  uint32_t value;
  __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

static void select_register(const struct pci_function* f, uint16_t offset) {
  outl(CONFIG_ADDRESS,
       0x80000000u | (uint32_t)f->bus << 16 | (uint32_t)f->slot << 11 | (uint32_t)f->function << 8 | (offset & 0xfc));
}

uint32_t pci_read32(const struct pci_function* f, uint16_t offset) {
  select_register(f, offset);
  return inl(CONFIG_DATA);
}

/* Narrow accesses go through the dword: every register the kernels touch is
 * naturally aligned, and a dword cycle works on every host bridge. */
uint16_t pci_read16(const struct pci_function* f, uint16_t offset) {
  return (uint16_t)(pci_read32(f, offset) >> (8 * (offset & 2)));
}

uint8_t pci_read8(const struct pci_function* f, uint16_t offset) {
  return (uint8_t)(pci_read32(f, offset) >> (8 * (offset & 3)));
}

void pci_write32(const struct pci_function* f, uint16_t offset, uint32_t value) {
  select_register(f, offset);
  outl(CONFIG_DATA, value);
}

void pci_write16(const struct pci_function* f, uint16_t offset, uint16_t value) {
  /* A 16-bit write to CONFIG_DATA + (offset & 2), so the neighbouring
   * register (e.g. the write-1-to-clear status next to the command) is not
   * written back. */
  select_register(f, offset);
  __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"((uint16_t)(CONFIG_DATA + (offset & 2))));
}

bool pci_find(uint16_t vendor, uint16_t device, unsigned index, struct pci_function* out) {
  for (uint8_t slot = 0; slot < 32; slot++) {
    struct pci_function f = {.bus = 0, .slot = slot, .function = 0};
    const uint32_t id = pci_read32(&f, PCI_VENDOR_ID);
    if ((uint16_t)id != vendor || (uint16_t)(id >> 16) != device) continue;
    if (index-- == 0) {
      f.vendor = vendor;
      f.device = device;
      *out = f;
      return true;
    }
  }
  return false;
}

uint8_t pci_find_capability(const struct pci_function* f, uint8_t id, uint8_t after) {
  if (!(pci_read16(f, PCI_STATUS) & PCI_STATUS_CAPABILITIES)) return 0;
  uint8_t at = after ? pci_read8(f, after + 1) : pci_read8(f, PCI_CAPABILITIES);
  /* 48 capabilities of 4 bytes fill the 192 bytes after the header: more
   * steps than that means the list loops. */
  for (int steps = 0; at; steps++) {
    at &= 0xfc;
    if (at < 0x40 || steps == 48)
      test_fail("%02x:%02x.%x: malformed capability list (pointer 0x%02x after %d steps)", f->bus, f->slot, f->function,
                at, steps);
    if (pci_read8(f, at) == id) return at;
    at = pci_read8(f, at + 1);
  }
  return 0;
}

/* Where the kernels place BARs nobody placed: the bottom of the PC's 32-bit
 * PCI window. */
static uint64_t next_free_bar_address = 0xc0000000u;

static uint64_t assign_bar(const struct pci_function* f, unsigned bar, bool is64) {
  const uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
  const uint16_t command = pci_read16(f, PCI_COMMAND);
  pci_write16(f, PCI_COMMAND, command & (uint16_t)~PCI_COMMAND_MEMORY); /* no decoding while sizing */
  const uint32_t low = pci_read32(f, reg);
  pci_write32(f, reg, 0xffffffffu);
  uint64_t mask = pci_read32(f, reg) & ~0xfu;
  if (is64) {
    pci_write32(f, reg + 4, 0xffffffffu);
    mask |= (uint64_t)pci_read32(f, reg + 4) << 32;
  } else {
    mask |= 0xffffffff00000000ull;
  }
  const uint64_t size = ~mask + 1;
  if (mask == 0 || (size & (size - 1)))
    test_fail("%02x:%02x.%x BAR%u: cannot size it (mask 0x%lx)", f->bus, f->slot, f->function, bar, mask);
  const uint64_t address = (next_free_bar_address + size - 1) & ~(size - 1);
  if (address + size > 0xfec00000u)
    test_fail("%02x:%02x.%x BAR%u: no room below 4 GiB for %lu bytes", f->bus, f->slot, f->function, bar, size);
  next_free_bar_address = address + size;
  pci_write32(f, reg, (uint32_t)address | (low & 0xf));
  if (is64) pci_write32(f, reg + 4, 0);
  pci_write16(f, PCI_COMMAND, command);
  print("pci %02x:%02x.%x BAR%u: placed at 0x%lx (%lu bytes)\n", f->bus, f->slot, f->function, bar, address, size);
  return address;
}

uint64_t pci_bar_address(const struct pci_function* f, unsigned bar) {
  if (bar > 5) test_fail("BAR%u does not exist", bar);
  const uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
  const uint32_t low = pci_read32(f, reg);
  if (low & 1) test_fail("%02x:%02x.%x BAR%u is an I/O BAR, expected memory", f->bus, f->slot, f->function, bar);
  const bool is64 = ((low >> 1) & 3) == 2;
  if (is64 && bar == 5) test_fail("BAR5 cannot be the low half of a 64-bit BAR");
  uint64_t address = low & ~0xfu;
  if (is64) address |= (uint64_t)pci_read32(f, reg + 4) << 32;
  if (address == 0 || address >= (1ull << 32)) address = assign_bar(f, bar, is64);
  return address;
}

void pci_enable(const struct pci_function* f) {
  const uint16_t command = pci_read16(f, PCI_COMMAND);
  pci_write16(f, PCI_COMMAND, command | PCI_COMMAND_MEMORY | PCI_COMMAND_BUS_MASTER | PCI_COMMAND_INTX_DISABLE);
}
