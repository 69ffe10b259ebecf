/* A small PCI driver layer for the test kernels: configuration space through
 * mechanism #1 (ports 0xCF8/0xCFC, which every PC chipset and QEMU's i440FX
 * and Q35 have), functions on bus 0 by vendor and device id, capability
 * lists, memory BARs, and MSI-X vectors aimed at the local APIC. */
#ifndef HOSTVISOR_TESTS_GUESTS_PCI_H
#define HOSTVISOR_TESTS_GUESTS_PCI_H

#include "hvtest.h"

struct pci_function {
  uint8_t bus, slot, function;
  uint16_t vendor, device;
};

enum {
  PCI_VENDOR_ID = 0x00,
  PCI_COMMAND = 0x04,
  PCI_STATUS = 0x06,
  PCI_BAR0 = 0x10,
  PCI_CAPABILITIES = 0x34,
};
enum { PCI_COMMAND_MEMORY = 0x2, PCI_COMMAND_BUS_MASTER = 0x4, PCI_COMMAND_INTX_DISABLE = 0x400 };
enum { PCI_STATUS_CAPABILITIES = 0x10 };
enum { PCI_CAP_MSIX = 0x11, PCI_CAP_VENDOR = 0x09 };

uint32_t pci_read32(const struct pci_function* f, uint16_t offset);
uint16_t pci_read16(const struct pci_function* f, uint16_t offset);
uint8_t pci_read8(const struct pci_function* f, uint16_t offset);
void pci_write32(const struct pci_function* f, uint16_t offset, uint32_t value);
void pci_write16(const struct pci_function* f, uint16_t offset, uint16_t value);

/* The index-th function (0-based, in slot order) on bus 0 with this vendor
 * and device id. Returns false when there are fewer. */
bool pci_find(uint16_t vendor, uint16_t device, unsigned index, struct pci_function* out);

/* The config-space offset of the first capability with this id after
 * `after` (0: from the start of the list), or 0. A malformed list (a loop,
 * a pointer into the header) fails the test. */
uint8_t pci_find_capability(const struct pci_function* f, uint8_t id, uint8_t after);

/* The guest-physical address memory BAR `bar` decodes at. A BAR the firmware
 * left unassigned (0) is sized and placed from 0xC0000000 up; one above the
 * 4 GiB the kernels map is moved there too. Fails the test on an I/O BAR. */
uint64_t pci_bar_address(const struct pci_function* f, unsigned bar);

/* Memory decoding and bus mastering on, legacy INTx off. */
void pci_enable(const struct pci_function* f);

/* ---- MSI-X (msix.c) ---- */
struct msix {
  struct pci_function function;
  uint8_t cap;              /* config-space offset of the capability */
  uint16_t table_size;      /* entries */
  volatile uint32_t* table; /* 4 dwords per entry: address low/high, data, vector control */
  volatile uint32_t* pba;   /* pending bits, one per entry */
};

/* Finds the MSI-X capability and maps its table. Fails the test if absent. */
void msix_init(const struct pci_function* f, struct msix* out);
/* Points entry `entry` at the local APIC `apic_id` with fixed delivery of
 * `vector`, edge-triggered, and unmasks it. */
void msix_route(struct msix* m, uint16_t entry, uint8_t apic_id, uint8_t vector);
/* Sets MSI-X Enable and clears Function Mask. */
void msix_enable(struct msix* m);
/* Sets or clears the entry's Mask bit. A masked entry's messages wait as its
 * pending bit and go out when it is unmasked. */
void msix_mask(struct msix* m, uint16_t entry, bool masked);
bool msix_pending(const struct msix* m, uint16_t entry);
/* Sets or clears Function Mask: every entry held as pending while it is set. */
void msix_function_mask(struct msix* m, bool masked);
/* Sets or clears the entry's Mask bit. A masked entry's messages wait as its
 * pending bit and go out when it is unmasked. */
void msix_mask(struct msix* m, uint16_t entry, bool masked);
bool msix_pending(const struct msix* m, uint16_t entry);
/* Sets or clears Function Mask: every entry held as pending while it is set. */
void msix_function_mask(struct msix* m, bool masked);

#endif
