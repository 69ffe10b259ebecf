/* The virtio-pci modern transport (virtio 1.2, 4.1) from the driver's side:
 * the vendor capabilities that locate each structure, device initialisation
 * (3.1.1), feature negotiation, queue setup with MSI-X vectors. */
#include "virtio.h"

/* 4.1.4 virtio_pci_cap: cfg_type values and field offsets. */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4 };
enum { CAP_CFG_TYPE = 3, CAP_BAR = 4, CAP_OFFSET = 8, CAP_LENGTH = 12, CAP_NOTIFY_MULTIPLIER = 16 };

/* 4.1.4.3 struct virtio_pci_common_cfg field offsets. */
enum {
  COMMON_DEVICE_FEATURE_SELECT = 0x00,
  COMMON_DEVICE_FEATURE = 0x04,
  COMMON_DRIVER_FEATURE_SELECT = 0x08,
  COMMON_DRIVER_FEATURE = 0x0c,
  COMMON_CONFIG_MSIX_VECTOR = 0x10,
  COMMON_NUM_QUEUES = 0x12,
  COMMON_DEVICE_STATUS = 0x14,
  COMMON_CONFIG_GENERATION = 0x15,
  COMMON_QUEUE_SELECT = 0x16,
  COMMON_QUEUE_SIZE = 0x18,
  COMMON_QUEUE_MSIX_VECTOR = 0x1a,
  COMMON_QUEUE_ENABLE = 0x1c,
  COMMON_QUEUE_NOTIFY_OFF = 0x1e,
  COMMON_QUEUE_DESC = 0x20,
  COMMON_QUEUE_DRIVER = 0x28,
  COMMON_QUEUE_DEVICE = 0x30,
  COMMON_SIZE = 0x38,
};

static uint8_t r8(const struct virtio_pci* d, unsigned off) { return *(volatile uint8_t*)(d->common + off); }
static uint16_t r16(const struct virtio_pci* d, unsigned off) { return *(volatile uint16_t*)(d->common + off); }
static uint32_t r32(const struct virtio_pci* d, unsigned off) { return *(volatile uint32_t*)(d->common + off); }
static void w8(struct virtio_pci* d, unsigned off, uint8_t v) { *(volatile uint8_t*)(d->common + off) = v; }
static void w16(struct virtio_pci* d, unsigned off, uint16_t v) { *(volatile uint16_t*)(d->common + off) = v; }
static void w32(struct virtio_pci* d, unsigned off, uint32_t v) { *(volatile uint32_t*)(d->common + off) = v; }
/* 64-bit fields as two dwords, low first (4.1.3.1: any device accepts that). */
static void w64(struct virtio_pci* d, unsigned off, uint64_t v) {
  w32(d, off, (uint32_t)v);
  w32(d, off + 4, (uint32_t)(v >> 32));
}

#define DEV_FMT "virtio %02x:%02x.%x"
#define DEV_ARGS(d) (d)->function.bus, (d)->function.slot, (d)->function.function

bool virtio_pci_find(uint16_t type, unsigned index, struct virtio_pci* dev) {
  memset(dev, 0, sizeof(*dev));
  return pci_find(VIRTIO_PCI_VENDOR, (uint16_t)VIRTIO_PCI_MODERN_DEVICE(type), index, &dev->function);
}

/* Maps every structure from the first capability of its type (4.1.4: a
 * driver uses the first one it understands). */
static void map_structures(struct virtio_pci* d) {
  const struct pci_function* f = &d->function;
  uint32_t common_length = 0, notify_length = 0;
  for (uint8_t cap = pci_find_capability(f, PCI_CAP_VENDOR, 0); cap;
       cap = pci_find_capability(f, PCI_CAP_VENDOR, cap)) {
    const uint8_t type = pci_read8(f, cap + CAP_CFG_TYPE);
    const uint8_t bar = pci_read8(f, cap + CAP_BAR);
    if (bar > 5) continue; /* reserved BAR numbers: skip the capability (4.1.4) */
    const uint32_t offset = pci_read32(f, cap + CAP_OFFSET);
    const uint32_t length = pci_read32(f, cap + CAP_LENGTH);
    volatile uint8_t** slot = NULL;
    switch (type) {
      case CAP_COMMON:
        slot = &d->common;
        if (!d->common) common_length = length;
        break;
      case CAP_NOTIFY:
        slot = &d->notify_base;
        if (!d->notify_base) {
          notify_length = length;
          d->notify_multiplier = pci_read32(f, cap + CAP_NOTIFY_MULTIPLIER);
        }
        break;
      case CAP_DEVICE:
        slot = &d->device_cfg;
        if (!d->device_cfg) d->device_cfg_length = length;
        break;
      default: break; /* ISR (INTx only), PCI_CFG window, shared memory: not used */
    }
    if (slot && !*slot) *slot = (volatile uint8_t*)(uintptr_t)(pci_bar_address(f, bar) + offset);
  }
  if (!d->common || common_length < COMMON_SIZE)
    test_fail(DEV_FMT ": no usable common configuration capability (length %u)", DEV_ARGS(d), common_length);
  if (!d->notify_base) test_fail(DEV_FMT ": no notification capability", DEV_ARGS(d));
  d->notify_length = notify_length;
}

uint8_t virtio_pci_status(const struct virtio_pci* dev) { return dev->common ? r8(dev, COMMON_DEVICE_STATUS) : 0; }

static void set_status(struct virtio_pci* d, uint8_t bits) {
  w8(d, COMMON_DEVICE_STATUS, (uint8_t)(r8(d, COMMON_DEVICE_STATUS) | bits));
}

void virtio_pci_start(struct virtio_pci* d, uint8_t vector_base, uint64_t wanted) {
  map_structures(d);
  pci_enable(&d->function);
  d->vector_base = vector_base;
  d->config_vector = vector_base;
  irq_register(d->config_vector, NULL);
  msix_init(&d->function, &d->msix);
  msix_route(&d->msix, 0, (uint8_t)lapic_id(), d->config_vector);
  msix_enable(&d->msix);

  /* 3.1.1: reset, then ACKNOWLEDGE, DRIVER, features, FEATURES_OK. */
  w8(d, COMMON_DEVICE_STATUS, 0);
  for (int tries = 0; r8(d, COMMON_DEVICE_STATUS) != 0; tries++) {
    if (tries == 1000)
      test_fail(DEV_FMT ": status 0x%02x does not read 0 after reset", DEV_ARGS(d), r8(d, COMMON_DEVICE_STATUS));
  }
  set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
  set_status(d, VIRTIO_STATUS_DRIVER);
  w32(d, COMMON_DEVICE_FEATURE_SELECT, 0);
  d->device_features = r32(d, COMMON_DEVICE_FEATURE);
  w32(d, COMMON_DEVICE_FEATURE_SELECT, 1);
  d->device_features |= (uint64_t)r32(d, COMMON_DEVICE_FEATURE) << 32;
  if (!(d->device_features & VIRTIO_F_VERSION_1))
    test_fail(DEV_FMT ": VIRTIO_F_VERSION_1 not offered (features 0x%lx)", DEV_ARGS(d), d->device_features);
  d->features = d->device_features & (wanted | VIRTIO_F_VERSION_1);
  w32(d, COMMON_DRIVER_FEATURE_SELECT, 0);
  w32(d, COMMON_DRIVER_FEATURE, (uint32_t)d->features);
  w32(d, COMMON_DRIVER_FEATURE_SELECT, 1);
  w32(d, COMMON_DRIVER_FEATURE, (uint32_t)(d->features >> 32));
  set_status(d, VIRTIO_STATUS_FEATURES_OK);
  const uint8_t status = r8(d, COMMON_DEVICE_STATUS);
  if (!(status & VIRTIO_STATUS_FEATURES_OK))
    test_fail(DEV_FMT ": device refused features 0x%lx (status 0x%02x)", DEV_ARGS(d), d->features, status);

  w16(d, COMMON_CONFIG_MSIX_VECTOR, 0);
  if (r16(d, COMMON_CONFIG_MSIX_VECTOR) != 0)
    test_fail(DEV_FMT ": config_msix_vector reads 0x%x after writing 0", DEV_ARGS(d),
              r16(d, COMMON_CONFIG_MSIX_VECTOR));
  d->num_queues = r16(d, COMMON_NUM_QUEUES);
}

void virtio_pci_setup_queue(struct virtio_pci* d, struct virtq* q, uint16_t entry) {
  if (q->index >= d->num_queues)
    test_fail(DEV_FMT ": %s is queue %u, the device has %u", DEV_ARGS(d), q->name, q->index, d->num_queues);
  w16(d, COMMON_QUEUE_SELECT, q->index);
  const uint16_t max = r16(d, COMMON_QUEUE_SIZE);
  if (max < VIRTQ_SIZE)
    test_fail(DEV_FMT ": %s holds at most %u entries, need %u", DEV_ARGS(d), q->name, max, VIRTQ_SIZE);
  if (r16(d, COMMON_QUEUE_ENABLE)) test_fail(DEV_FMT ": %s is enabled right after reset", DEV_ARGS(d), q->name);
  w16(d, COMMON_QUEUE_SIZE, VIRTQ_SIZE);

  const uint16_t msix_entry = (uint16_t)(1 + entry);
  virtq_attach_vector(q, (uint8_t)(d->vector_base + msix_entry));
  msix_route(&d->msix, msix_entry, (uint8_t)lapic_id(), q->vector);
  w16(d, COMMON_QUEUE_MSIX_VECTOR, msix_entry);
  if (r16(d, COMMON_QUEUE_MSIX_VECTOR) != msix_entry)
    test_fail(DEV_FMT ": %s refused MSI-X entry %u (reads 0x%x)", DEV_ARGS(d), q->name, msix_entry,
              r16(d, COMMON_QUEUE_MSIX_VECTOR));

  w64(d, COMMON_QUEUE_DESC, (uint64_t)(uintptr_t)q->desc);
  w64(d, COMMON_QUEUE_DRIVER, (uint64_t)(uintptr_t)&q->avail);
  w64(d, COMMON_QUEUE_DEVICE, (uint64_t)(uintptr_t)&q->used);
  const uint32_t notify_offset = (uint32_t)r16(d, COMMON_QUEUE_NOTIFY_OFF) * d->notify_multiplier;
  if (notify_offset > d->notify_length || d->notify_length - notify_offset < 2)
    test_fail(DEV_FMT ": %s notify offset %u is outside the %u-byte notification area", DEV_ARGS(d), q->name,
              notify_offset, d->notify_length);
  q->notify = (volatile uint16_t*)(d->notify_base + notify_offset);
  q->event_idx = (d->features & VIRTIO_F_EVENT_IDX) != 0;
  q->transport = d;
  w16(d, COMMON_QUEUE_ENABLE, 1);
  if (r16(d, COMMON_QUEUE_ENABLE) != 1) test_fail(DEV_FMT ": %s does not read enabled", DEV_ARGS(d), q->name);
}

void virtio_pci_driver_ok(struct virtio_pci* d) {
  set_status(d, VIRTIO_STATUS_DRIVER_OK);
  const uint8_t status = r8(d, COMMON_DEVICE_STATUS);
  if (status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED) || !(status & VIRTIO_STATUS_DRIVER_OK))
    test_fail(DEV_FMT ": status 0x%02x after DRIVER_OK", DEV_ARGS(d), status);
}

static void check_config_range(const struct virtio_pci* d, uint32_t offset, uint32_t size) {
  if (!d->device_cfg || offset > d->device_cfg_length || d->device_cfg_length - offset < size)
    test_fail(DEV_FMT ": device configuration has %u bytes, read of %u at %u", DEV_ARGS(d), d->device_cfg_length, size,
              offset);
}

uint32_t virtio_pci_config32(const struct virtio_pci* d, uint32_t offset) {
  check_config_range(d, offset, 4);
  return *(volatile uint32_t*)(d->device_cfg + offset);
}

uint64_t virtio_pci_config64(const struct virtio_pci* d, uint32_t offset) {
  check_config_range(d, offset, 8);
  /* 4.1.3.1: a 64-bit field is read as two dwords; a config_generation
   * change in between means the halves may not match (2.5.1). */
  for (int tries = 0; tries < 10; tries++) {
    const uint8_t before = r8(d, COMMON_CONFIG_GENERATION);
    const uint64_t low = *(volatile uint32_t*)(d->device_cfg + offset);
    const uint64_t high = *(volatile uint32_t*)(d->device_cfg + offset + 4);
    if (r8(d, COMMON_CONFIG_GENERATION) == before) return high << 32 | low;
  }
  test_fail(DEV_FMT ": config_generation keeps changing", DEV_ARGS(d));
}

uint32_t virtio_pci_config_interrupts(const struct virtio_pci* d) { return irq_count(d->config_vector); }
