/* The device fuzzer's shared pieces (device_fuzz.c drives, the other
 * device_fuzz_*.c files each fuzz one kind of thing).
 *
 * Safety rule of the whole kernel: nothing the fuzzer hands a device — a
 * BAR, a queue or descriptor address, an MSI-X message, a fw_cfg DMA
 * address — may let the device or the CPU write below the fuzz window (the
 * kernel's code, data, stack and page tables live there). Every such value
 * comes from fuzz_hostile_address() and friends, which pick among "inside
 * the window", "in MMIO" and "past RAM", never "inside the kernel". */
#ifndef HOSTVISOR_TESTS_GUESTS_DEVICE_FUZZ_H
#define HOSTVISOR_TESTS_GUESTS_DEVICE_FUZZ_H

#include "virtio.h"

/* ---- the PRNG (splitmix64: one 64-bit state, good enough spread) ---- */
uint64_t fuzz_next(void);
/* Uniform in [0, n) (n > 0; the tiny modulo bias does not matter here). */
static inline uint64_t fuzz_below(uint64_t n) { return fuzz_next() % n; }
static inline bool fuzz_chance(unsigned percent) { return fuzz_below(100) < percent; }

/* ---- memory ---- */
/* [start, end): the RAM the fuzzer may hand to devices, the upper part of
 * low RAM, well above the kernel image. It starts with one FUZZ_SLICE per
 * virtio device (rings, then data), then the fw_cfg DMA pages; BARs may be
 * moved from FUZZ_BAR_AREA_OFFSET on. */
extern uint64_t fuzz_window_start, fuzz_window_end;
extern uint64_t fuzz_ram_end; /* the end of the RAM range the window is in */
#define FUZZ_SLICE (256u * 1024u)
/* A slice: FUZZ_QUEUE_SLOTS rings of FUZZ_RING_BYTES each (descriptor
 * table, then the driver area at +4 KiB, the device area at +5 KiB), then
 * FUZZ_INDIRECT_BYTES of indirect tables, then data buffers. Only rings and
 * indirect tables (written by this kernel with safe addresses, and the
 * used entries devices add) are ever given to a device as descriptors. */
#define FUZZ_QUEUE_SLOTS 8u
#define FUZZ_RING_BYTES (8u * 1024u)
#define FUZZ_INDIRECT_BYTES (32u * 1024u)
#define FUZZ_RING_AREA (FUZZ_QUEUE_SLOTS * FUZZ_RING_BYTES + FUZZ_INDIRECT_BYTES)
/* From here on the window holds nothing the CPU writes: BARs may be moved
 * there without aliasing the rings. */
#define FUZZ_BAR_AREA_OFFSET (8u << 20)

/* Fills n bytes at p from the PRNG. */
void fuzz_fill(void* p, uint64_t n);

/* A guest-physical address for a device to read or write, never below the
 * window: in [lo, hi) (a region of the window the caller owns) most of the
 * time, otherwise in MMIO, past the end of RAM, straddling it, above 4 GiB
 * or non-canonical. */
uint64_t fuzz_hostile_address(uint64_t lo, uint64_t hi);
/* A 32-bit value that is safe as the low half of an address register whose
 * high half may be anything (>= the window start, or in MMIO). */
uint32_t fuzz_safe_low32(void);
/* A buffer length: 0, small, a page, huge, or random. */
uint32_t fuzz_length(void);

/* ---- MMIO ---- */
static inline uint64_t mmio_read(uint64_t address, unsigned width) {
  switch (width) {
    case 1: return *(volatile uint8_t*)(uintptr_t)address;
    case 2: return *(volatile uint16_t*)(uintptr_t)address;
    case 4: return *(volatile uint32_t*)(uintptr_t)address;
    default: return *(volatile uint64_t*)(uintptr_t)address;
  }
}
static inline void mmio_write(uint64_t address, unsigned width, uint64_t value) {
  switch (width) {
    case 1: *(volatile uint8_t*)(uintptr_t)address = (uint8_t)value; break;
    case 2: *(volatile uint16_t*)(uintptr_t)address = (uint16_t)value; break;
    case 4: *(volatile uint32_t*)(uintptr_t)address = (uint32_t)value; break;
    default: *(volatile uint64_t*)(uintptr_t)address = value; break;
  }
}
/* True when [address, address + size) may be touched by the CPU: mapped
 * (below 4 GiB) and not below the window. */
bool fuzz_cpu_may_touch(uint64_t address, uint64_t size);

/* ---- PCI functions as found at boot ---- */
#define FUZZ_MAX_FUNCTIONS 24
struct fuzz_bar {
  uint64_t address; /* as found (or placed) at boot: where "repair" puts it back */
  uint64_t size;    /* 0: no BAR */
  bool io, is64;
};
struct fuzz_function {
  struct pci_function f;
  struct fuzz_bar bar[6];
  uint8_t msix_cap; /* 0 if none */
  uint8_t msix_bar; /* the table's BAR and offset, its size in bytes */
  uint32_t msix_offset, msix_bytes;
  uint8_t pci_cfg_cap; /* virtio VIRTIO_PCI_CAP_PCI_CFG, 0 if none */
  int8_t common_bar;   /* virtio common configuration: BAR (-1: not virtio) */
  uint32_t common_offset;
  int8_t notify_bar;
  uint32_t notify_offset, notify_multiplier;
  int8_t isr_bar;
  uint32_t isr_offset;
  int8_t device_bar;
  uint32_t device_offset;
};
extern struct fuzz_function fuzz_functions[FUZZ_MAX_FUNCTIONS];
extern unsigned fuzz_function_count;
/* Where a BAR decodes now (the fuzzer moves them), or 0 when not usable
 * by the CPU (decoding off, above 4 GiB, below the window). */
uint64_t fuzz_bar_now(const struct fuzz_function* fn, unsigned bar);

/* ---- virtio-mmio transports as found at boot ---- */
#define FUZZ_MAX_MMIO 8
extern uint64_t fuzz_mmio_base[FUZZ_MAX_MMIO];
extern unsigned fuzz_mmio_count;

/* ---- virtio devices on either transport (device_fuzz_virtio.c) ---- */
#define FUZZ_MAX_VIRTIO 16
struct fuzz_virtio {
  bool mmio;      /* virtio-mmio; else virtio-pci */
  unsigned index; /* into fuzz_functions or fuzz_mmio_base */
  uint32_t type;  /* virtio device id */
  uint64_t slice; /* this device's FUZZ_SLICE of the window */
};
extern struct fuzz_virtio fuzz_virtios[FUZZ_MAX_VIRTIO];
extern unsigned fuzz_virtio_count;
/* One hostile virtqueue round on device `d`: negotiate (or not), set up a
 * queue with hostile rings, notify, mess with it after DRIVER_OK. */
void fuzz_virtqueue(struct fuzz_virtio* d);
/* Resets every virtio device: the run's last lines are not mixed with a
 * console's output still on its way. */
void fuzz_virtio_reset_all(void);
/* The value a write to a virtio register that holds a ring address gets. */
uint32_t fuzz_ring_address_low32(void);

/* fuzz.trace=K: from op K on, each op says what it does. */
extern bool fuzz_tracing;
#define FUZZ_TRACE(...)                   \
  do {                                    \
    if (fuzz_tracing) print(__VA_ARGS__); \
  } while (0)

/* Statistics for the progress lines. */
struct fuzz_stats {
  uint64_t port, mmio, config, virtqueue, fw_cfg, repair, skipped;
};
extern struct fuzz_stats fuzz_stats;

#endif
