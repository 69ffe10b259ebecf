/* A small virtio 1.x driver for the test kernels: split virtqueues in guest
 * RAM (virtqueue.c) over the modern virtio-pci transport (virtio_pci.c),
 * with used-buffer notifications as MSI-X interrupts to the local APIC.
 * Numbers and layouts are from the virtio 1.2 specification (OASIS). */
#ifndef HOSTVISOR_TESTS_GUESTS_VIRTIO_H
#define HOSTVISOR_TESTS_GUESTS_VIRTIO_H

#include "pci.h"

/* 2.1 device status */
enum {
  VIRTIO_STATUS_ACKNOWLEDGE = 1,
  VIRTIO_STATUS_DRIVER = 2,
  VIRTIO_STATUS_DRIVER_OK = 4,
  VIRTIO_STATUS_FEATURES_OK = 8,
  VIRTIO_STATUS_NEEDS_RESET = 64,
  VIRTIO_STATUS_FAILED = 128,
};
/* 6 reserved feature bits */
#define VIRTIO_F_EVENT_IDX (1ull << 29)
#define VIRTIO_F_VERSION_1 (1ull << 32)

/* 5 device types; a modern virtio-pci function has device id 0x1040 + type. */
enum { VIRTIO_TYPE_BLOCK = 2, VIRTIO_TYPE_CONSOLE = 3 };
#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_MODERN_DEVICE(type) (0x1040 + (type))
#define VIRTIO_NO_VECTOR 0xffff

struct virtio_pci;

/* ---- split virtqueue (2.7) ---- */
/* Small on purpose: every byte of .bss is zeroed at boot on CPUs that run a
 * few million instructions a second. Room for a few chains in flight. */
#define VIRTQ_SIZE 16
enum { VIRTQ_DESC_F_NEXT = 1, VIRTQ_DESC_F_WRITE = 2 };

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[VIRTQ_SIZE];
  uint16_t used_event; /* with VIRTIO_F_EVENT_IDX */
};
struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};
struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[VIRTQ_SIZE];
  uint16_t avail_event; /* with VIRTIO_F_EVENT_IDX */
};

/* One queue: the three rings (guest-physical == virtual in these kernels)
 * and the driver's bookkeeping. Allocate it statically in the scenario. */
struct virtq {
  struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(16)));
  struct virtq_avail avail __attribute__((aligned(2)));
  struct virtq_used used __attribute__((aligned(4)));
  const char* name;                   /* for messages */
  uint16_t index;                     /* queue number in the device */
  uint16_t size;                      /* as negotiated: VIRTQ_SIZE */
  uint8_t vector;                     /* the APIC vector its MSI-X entry sends */
  bool event_idx;                     /* VIRTIO_F_EVENT_IDX negotiated */
  volatile uint16_t* notify;          /* where a 16-bit write of `index` notifies the device */
  const struct virtio_pci* transport; /* for the device status in failure messages */
  uint16_t free_head;                 /* free descriptors, linked through next */
  uint16_t free_count;
  uint8_t chain_length[VIRTQ_SIZE]; /* by head: descriptors of a chain in flight, 0 if none */
  uint16_t avail_idx;               /* driver's copy of avail.idx */
  uint16_t kicked_idx;              /* avail_idx at the last virtq_kick() */
  uint16_t last_used;               /* used entries consumed so far */
  uint16_t in_flight;               /* chains made available and not yet returned */
  uint32_t interrupts_at_kick;      /* irq_count(vector) at the last virtq_kick() */
  /* used.idx as the last interrupt's handler saw it: the entries below it
   * were announced by an interrupt. */
  volatile uint16_t used_idx_at_interrupt;
  /* Used entries that need no interrupt of their own: announced by one, or
   * added while the device still saw an older used_event (EVENT_IDX). */
  uint16_t covered;
  uint16_t used_event;                   /* the value last written to avail.used_event */
  void (*on_interrupt)(struct virtq* q); /* optional, from the interrupt handler (any CPU) */
  uint32_t chains;                       /* chains returned since start */
  uint32_t notifications;                /* notify writes done */
  uint32_t notifications_suppressed;
};

struct virtq_buffer {
  void* addr;
  uint32_t len;
  bool device_writes;
};

struct virtq_completion {
  uint16_t head; /* the chain's head, as virtq_add() returned it */
  uint32_t len;  /* bytes the device wrote into it */
};

/* Prepares `q` (rings zeroed) for queue `index`; the transport fills in
 * notify and vector when it enables the queue. */
void virtq_init(struct virtq* q, const char* name, uint16_t index);
/* Takes `vector` for this queue's interrupts (registers the handler that
 * records what each interrupt announced). */
void virtq_attach_vector(struct virtq* q, uint8_t vector);
/* Puts the buffers in one descriptor chain and makes it available; the
 * device hears of it at the next virtq_kick(). Returns the chain's head.
 * Fails the test if the free descriptors do not suffice. */
uint16_t virtq_add(struct virtq* q, const struct virtq_buffer* buffers, unsigned count);
/* Notifies the device of the chains added since the last kick, unless it
 * asked not to be (avail_event with EVENT_IDX, else VIRTQ_USED_F_NO_NOTIFY). */
void virtq_kick(struct virtq* q);
/* Waits (sti; hlt) until the device returned `count` chains, in any order,
 * each announced by an MSI-X interrupt (one that came after the device put
 * it in the used ring); fills `out`.
 * Fails the test, saying what was missing, after the wait_until() deadline,
 * or if the device returns a chain that is not in flight. */
void virtq_wait(struct virtq* q, struct virtq_completion* out, unsigned count);
/* One chain: add, kick, wait. Returns the number of bytes the device wrote. */
uint32_t virtq_transfer(struct virtq* q, const struct virtq_buffer* buffers, unsigned count);
/* Used entries the device added that the driver did not consume. */
uint16_t virtq_pending_used(const struct virtq* q);

/* ---- virtio-pci modern transport (4.1) ---- */
struct virtio_pci {
  struct pci_function function;
  volatile uint8_t* common;     /* struct virtio_pci_common_cfg */
  volatile uint8_t* device_cfg; /* device-specific configuration (NULL if none) */
  uint32_t device_cfg_length;
  volatile uint8_t* notify_base;
  uint32_t notify_length;
  uint32_t notify_multiplier;
  struct msix msix;
  uint64_t device_features;
  uint64_t features; /* negotiated */
  uint16_t num_queues;
  /* APIC vectors: configuration changes at vector_base (MSI-X entry 0), the
   * queue set up with `entry` at vector_base + 1 + entry (MSI-X entry 1 + entry). */
  uint8_t vector_base;
  uint8_t config_vector;
};

/* The index-th modern virtio-pci function of this device type on bus 0. */
bool virtio_pci_find(uint16_t type, unsigned index, struct virtio_pci* dev);
/* Reads the virtio capabilities, maps the structures, routes MSI-X entry 0
 * (configuration changes) to `vector_base` on this CPU's APIC, enables
 * MSI-X, resets the device and negotiates: VERSION_1 is required, `wanted`
 * is taken where offered. Leaves the device at FEATURES_OK. */
void virtio_pci_start(struct virtio_pci* dev, uint8_t vector_base, uint64_t wanted);
/* Sets up queue q->index with VIRTQ_SIZE entries and MSI-X entry 1 + `entry`,
 * routed to vector_base + 1 + entry. */
void virtio_pci_setup_queue(struct virtio_pci* dev, struct virtq* q, uint16_t entry);
/* DRIVER_OK: the device may now use the queues. */
void virtio_pci_driver_ok(struct virtio_pci* dev);
uint8_t virtio_pci_status(const struct virtio_pci* dev);
/* Device configuration reads; the 64-bit one is retried until
 * config_generation is stable across its two halves. */
uint32_t virtio_pci_config32(const struct virtio_pci* dev, uint32_t offset);
uint64_t virtio_pci_config64(const struct virtio_pci* dev, uint32_t offset);
/* Configuration-change interrupts seen (NEEDS_RESET is announced that way). */
uint32_t virtio_pci_config_interrupts(const struct virtio_pci* dev);

#endif
