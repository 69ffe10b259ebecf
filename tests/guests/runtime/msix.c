/* MSI-X (PCI 3.0, 6.8.2): the table lives in a memory BAR; each entry holds
 * the message address and data the function writes to interrupt. On x86 the
 * address selects a local APIC (0xFEE00000 | APIC ID << 12) and the data the
 * vector (fixed delivery, edge trigger: the other bits zero). */
#include "pci.h"

enum { MSIX_CONTROL = 2, MSIX_TABLE = 4, MSIX_PBA = 8 };
enum { MSIX_ENABLE = 0x8000, MSIX_FUNCTION_MASK = 0x4000, MSIX_SIZE_MASK = 0x7ff };
enum { ENTRY_ADDRESS_LOW = 0, ENTRY_ADDRESS_HIGH = 1, ENTRY_DATA = 2, ENTRY_CONTROL = 3, ENTRY_DWORDS = 4 };

void msix_init(const struct pci_function* f, struct msix* out) {
  const uint8_t cap = pci_find_capability(f, PCI_CAP_MSIX, 0);
  if (!cap) test_fail("%02x:%02x.%x has no MSI-X capability", f->bus, f->slot, f->function);
  const uint16_t control = pci_read16(f, cap + MSIX_CONTROL);
  const uint32_t table = pci_read32(f, cap + MSIX_TABLE);
  const uint32_t pba = pci_read32(f, cap + MSIX_PBA);
  *out = (struct msix){
      .function = *f,
      .cap = cap,
      .table_size = (uint16_t)((control & MSIX_SIZE_MASK) + 1),
      .table = (volatile uint32_t*)(uintptr_t)(pci_bar_address(f, table & 7) + (table & ~7u)),
      .pba = (volatile uint32_t*)(uintptr_t)(pci_bar_address(f, pba & 7) + (pba & ~7u)),
  };
}

static void set_control(struct msix* m, uint16_t set, uint16_t clear) {
  const uint16_t control = pci_read16(&m->function, m->cap + MSIX_CONTROL);
  pci_write16(&m->function, m->cap + MSIX_CONTROL, (uint16_t)((control | set) & ~clear));
}

static void check_entry(const struct msix* m, uint16_t entry) {
  if (entry >= m->table_size) test_fail("MSI-X entry %u does not exist (the table has %u)", entry, m->table_size);
}

void msix_route(struct msix* m, uint16_t entry, uint8_t apic_id, uint8_t vector) {
  check_entry(m, entry);
  volatile uint32_t* e = m->table + ENTRY_DWORDS * entry;
  e[ENTRY_CONTROL] = 1; /* masked while it changes */
  e[ENTRY_ADDRESS_LOW] = 0xfee00000u | (uint32_t)apic_id << 12;
  e[ENTRY_ADDRESS_HIGH] = 0;
  e[ENTRY_DATA] = vector;
  e[ENTRY_CONTROL] = 0;
  if (e[ENTRY_DATA] != vector || e[ENTRY_CONTROL] & 1)
    test_fail("MSI-X entry %u reads back data 0x%x control 0x%x after routing vector 0x%x", entry, e[ENTRY_DATA],
              e[ENTRY_CONTROL], vector);
}

void msix_enable(struct msix* m) {
  set_control(m, MSIX_ENABLE, MSIX_FUNCTION_MASK);
  const uint16_t now = pci_read16(&m->function, m->cap + MSIX_CONTROL);
  if ((now & (MSIX_ENABLE | MSIX_FUNCTION_MASK)) != MSIX_ENABLE)
    test_fail("MSI-X control reads 0x%04x after enabling", now);
}

void msix_mask(struct msix* m, uint16_t entry, bool masked) {
  check_entry(m, entry);
  m->table[ENTRY_DWORDS * entry + ENTRY_CONTROL] = masked ? 1 : 0;
}

bool msix_pending(const struct msix* m, uint16_t entry) {
  check_entry(m, entry);
  return (m->pba[entry / 32] >> (entry % 32)) & 1;
}

void msix_function_mask(struct msix* m, bool masked) {
  set_control(m, masked ? MSIX_FUNCTION_MASK : 0, masked ? 0 : MSIX_FUNCTION_MASK);
}
