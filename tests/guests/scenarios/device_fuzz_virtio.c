/* Hostile virtqueues for the device fuzzer, on both transports (virtio 1.2:
 * 4.1 virtio-pci modern, 4.2 virtio-mmio version 2). One round: reset and
 * negotiate random or hostile features (or keep the device as it is), pick
 * a queue (sometimes one that does not exist), give it a random size and
 * rings in this device's slice of the window (or in MMIO, past RAM,
 * misaligned, all three overlapping), fill descriptors that loop, chain past
 * the table, carry huge or zero lengths, point into MMIO or past RAM or at
 * the ring itself, nest indirect tables, are write-only where the device
 * reads; publish them with a plausible or wild avail index, notify, and then
 * perhaps change the queue under the device's feet.
 *
 * Descriptor tables (rings and indirect tables) only ever live in the ring
 * area of a slice, which holds nothing but what this file wrote (with safe
 * addresses) and the used entries devices add: a device never finds an
 * address below the window in a descriptor (device_fuzz.h). */
#include "device_fuzz.h"

void fuzz_repair_function(const struct fuzz_function* fn);

enum { STATUS_ACK = 1, STATUS_DRIVER = 2, STATUS_DRIVER_OK = 4, STATUS_FEATURES_OK = 8 };
enum { DESC_NEXT = 1, DESC_WRITE = 2, DESC_INDIRECT = 4 };
enum {
  TYPE_NET = 1,
  TYPE_BLOCK = 2,
  TYPE_CONSOLE = 3,
  TYPE_RNG = 4,
  TYPE_BALLOON = 5,
  TYPE_SCSI = 8,
  TYPE_VSOCK = 19,
  TYPE_FS = 26,
};

/* virtio-pci common configuration offsets (4.1.4.3) and virtio-mmio
 * register offsets (4.2.2). */
enum {
  PCI_DEVICE_FEATURE_SELECT = 0x00,
  PCI_DEVICE_FEATURE = 0x04,
  PCI_DRIVER_FEATURE_SELECT = 0x08,
  PCI_DRIVER_FEATURE = 0x0c,
  PCI_CONFIG_MSIX_VECTOR = 0x10,
  PCI_NUM_QUEUES = 0x12,
  PCI_DEVICE_STATUS = 0x14,
  PCI_QUEUE_SELECT = 0x16,
  PCI_QUEUE_SIZE = 0x18,
  PCI_QUEUE_MSIX_VECTOR = 0x1a,
  PCI_QUEUE_ENABLE = 0x1c,
  PCI_QUEUE_NOTIFY_OFF = 0x1e,
  PCI_QUEUE_DESC = 0x20,
  PCI_QUEUE_DRIVER = 0x28,
  PCI_QUEUE_DEVICE = 0x30,
};
enum {
  MMIO_DEVICE_FEATURES = 0x010,
  MMIO_DEVICE_FEATURES_SEL = 0x014,
  MMIO_DRIVER_FEATURES = 0x020,
  MMIO_DRIVER_FEATURES_SEL = 0x024,
  MMIO_QUEUE_SEL = 0x030,
  MMIO_QUEUE_NUM_MAX = 0x034,
  MMIO_QUEUE_NUM = 0x038,
  MMIO_QUEUE_READY = 0x044,
  MMIO_QUEUE_NOTIFY = 0x050,
  MMIO_INTERRUPT_STATUS = 0x060,
  MMIO_INTERRUPT_ACK = 0x064,
  MMIO_STATUS = 0x070,
  MMIO_QUEUE_DESC_LOW = 0x080,
  MMIO_QUEUE_DRIVER_LOW = 0x090,
  MMIO_QUEUE_DEVICE_LOW = 0x0a0,
  MMIO_CONFIG = 0x100,
};

struct virtio_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

/* One device as this round reaches it. */
struct transport {
  struct fuzz_virtio* d;
  const struct fuzz_function* fn; /* virtio-pci only */
  uint64_t regs;                  /* common configuration, or the virtio-mmio registers */
  uint64_t notify;                /* virtio-pci notification area (0: not decoding) */
  uint64_t notify_size;
  uint64_t isr;        /* virtio-pci ISR byte (0: not decoding) */
  uint64_t device_cfg; /* device configuration (0: not decoding) */
};

static uint32_t r32(const struct transport* t, unsigned off) { return (uint32_t)mmio_read(t->regs + off, 4); }
static uint16_t r16(const struct transport* t, unsigned off) { return (uint16_t)mmio_read(t->regs + off, 2); }
static void w32(const struct transport* t, unsigned off, uint32_t v) { mmio_write(t->regs + off, 4, v); }
static void w16(const struct transport* t, unsigned off, uint16_t v) { mmio_write(t->regs + off, 2, v); }
static void w8(const struct transport* t, unsigned off, uint8_t v) { mmio_write(t->regs + off, 1, v); }

static uint8_t status_read(const struct transport* t) {
  return t->d->mmio ? (uint8_t)r32(t, MMIO_STATUS) : (uint8_t)mmio_read(t->regs + PCI_DEVICE_STATUS, 1);
}
static void status_write(const struct transport* t, uint8_t v) {
  if (t->d->mmio)
    w32(t, MMIO_STATUS, v);
  else
    w8(t, PCI_DEVICE_STATUS, v);
}
static uint32_t device_features(const struct transport* t, uint32_t select) {
  if (t->d->mmio) {
    w32(t, MMIO_DEVICE_FEATURES_SEL, select);
    return r32(t, MMIO_DEVICE_FEATURES);
  }
  w32(t, PCI_DEVICE_FEATURE_SELECT, select);
  return r32(t, PCI_DEVICE_FEATURE);
}
static void driver_features(const struct transport* t, uint32_t select, uint32_t v) {
  if (t->d->mmio) {
    w32(t, MMIO_DRIVER_FEATURES_SEL, select);
    w32(t, MMIO_DRIVER_FEATURES, v);
  } else {
    w32(t, PCI_DRIVER_FEATURE_SELECT, select);
    w32(t, PCI_DRIVER_FEATURE, v);
  }
}
static void queue_select(const struct transport* t, uint16_t q) {
  if (t->d->mmio)
    w32(t, MMIO_QUEUE_SEL, q);
  else
    w16(t, PCI_QUEUE_SELECT, q);
}
static uint16_t queue_max(const struct transport* t) {
  return t->d->mmio ? (uint16_t)r32(t, MMIO_QUEUE_NUM_MAX) : r16(t, PCI_QUEUE_SIZE);
}
static void queue_size(const struct transport* t, uint16_t n) {
  if (t->d->mmio)
    w32(t, MMIO_QUEUE_NUM, n);
  else
    w16(t, PCI_QUEUE_SIZE, n);
}
static void queue_enable(const struct transport* t, uint16_t v) {
  if (t->d->mmio)
    w32(t, MMIO_QUEUE_READY, v);
  else
    w16(t, PCI_QUEUE_ENABLE, v);
}
static void queue_addresses(const struct transport* t, uint64_t desc, uint64_t driver, uint64_t device) {
  const unsigned base = t->d->mmio ? MMIO_QUEUE_DESC_LOW : PCI_QUEUE_DESC;
  const unsigned stride = t->d->mmio ? 0x10 : 0x08;
  const uint64_t values[3] = {desc, driver, device};
  for (unsigned i = 0; i < 3; i++) {
    w32(t, base + i * stride, (uint32_t)values[i]);
    w32(t, base + i * stride + 4, (uint32_t)(values[i] >> 32));
  }
}
static void notify(const struct transport* t, uint16_t q, uint32_t value) {
  if (t->d->mmio) {
    w32(t, MMIO_QUEUE_NOTIFY, value);
    return;
  }
  if (!t->notify) return;
  const uint64_t offset = (uint64_t)r16(t, PCI_QUEUE_NOTIFY_OFF) * t->fn->notify_multiplier;
  (void)q;
  const uint64_t at = offset + 4 <= t->notify_size ? t->notify + offset : t->notify;
  /* 16 bits: the queue index; 32 bits: VIRTIO_F_NOTIFICATION_DATA's form. */
  if (fuzz_chance(80))
    mmio_write(at, 2, (uint16_t)value);
  else
    mmio_write(at, 4, value);
}

/* Reaches the device's registers, putting its BARs back if the fuzzer
 * moved them away. */
static bool open_transport(struct fuzz_virtio* d, struct transport* t) {
  memset(t, 0, sizeof *t);
  t->d = d;
  if (d->mmio) {
    t->regs = fuzz_mmio_base[d->index];
    t->device_cfg = t->regs + MMIO_CONFIG;
    return true;
  }
  const struct fuzz_function* fn = &fuzz_functions[d->index];
  t->fn = fn;
  uint64_t common = fuzz_bar_now(fn, (unsigned)fn->common_bar);
  if (!common) {
    fuzz_repair_function(fn);
    common = fuzz_bar_now(fn, (unsigned)fn->common_bar);
    if (!common) return false;
  }
  t->regs = common + fn->common_offset;
  if (fn->notify_bar >= 0) {
    const uint64_t bar = fuzz_bar_now(fn, (unsigned)fn->notify_bar);
    if (bar && fn->notify_offset < fn->bar[fn->notify_bar].size) {
      t->notify = bar + fn->notify_offset;
      t->notify_size = fn->bar[fn->notify_bar].size - fn->notify_offset;
    }
  }
  if (fn->isr_bar >= 0) {
    const uint64_t bar = fuzz_bar_now(fn, (unsigned)fn->isr_bar);
    if (bar) t->isr = bar + fn->isr_offset;
  }
  if (fn->device_bar >= 0) {
    const uint64_t bar = fuzz_bar_now(fn, (unsigned)fn->device_bar);
    if (bar) t->device_cfg = bar + fn->device_offset;
  }
  return true;
}

/* ---- the slice ---- */
static uint64_t ring_slot(const struct fuzz_virtio* d, uint16_t q) {
  return d->slice + (uint64_t)(q % FUZZ_QUEUE_SLOTS) * FUZZ_RING_BYTES;
}
static uint64_t indirect_area(const struct fuzz_virtio* d) { return d->slice + FUZZ_QUEUE_SLOTS * FUZZ_RING_BYTES; }
static uint64_t data_lo(const struct fuzz_virtio* d) { return d->slice + FUZZ_RING_AREA; }
static uint64_t data_hi(const struct fuzz_virtio* d) { return d->slice + FUZZ_SLICE; }

uint32_t fuzz_ring_address_low32(void) {
  if (fuzz_virtio_count && fuzz_chance(70)) {
    const struct fuzz_virtio* d = &fuzz_virtios[fuzz_below(fuzz_virtio_count)];
    uint64_t a = d->slice + fuzz_below(FUZZ_RING_AREA);
    if (fuzz_chance(80)) a &= ~15ull;
    return (uint32_t)a;
  }
  return (uint32_t)fuzz_hostile_address(0, 0); /* MMIO, past RAM: never RAM below the window */
}

/* ---- buffer contents: plausible request headers, so devices get past their first check ---- */
static void put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

static void fill_balloon(uint8_t* p, uint32_t n, const struct fuzz_virtio* d) {
  /* Page frame numbers: this slice's data (given back and zeroed: fine),
   * past RAM, or wild above the window; never the kernel's pages. */
  for (uint32_t i = 0; i + 4 <= n; i += 4) {
    uint64_t pfn;
    const uint64_t pick = fuzz_below(100);
    if (pick < 60)
      pfn = (data_lo(d) + fuzz_below(data_hi(d) - data_lo(d))) >> 12;
    else if (pick < 90)
      pfn = (fuzz_ram_end >> 12) + fuzz_below(1u << 20);
    else
      pfn = (fuzz_window_start >> 12) + (fuzz_next() & 0x7fffffffu);
    put32(p + i, (uint32_t)pfn);
  }
}

static void fill_request(uint8_t* p, uint32_t n, const struct fuzz_virtio* d, uint16_t q) {
  uint8_t h[64];
  fuzz_fill(h, sizeof h);
  switch (d->type) {
    case TYPE_BLOCK: {
      static const uint32_t types[] = {0, 1, 4, 8, 11, 13, 0, 1, 0xffffffffu};
      put32(h, types[fuzz_below(sizeof types / sizeof types[0])]);
      put64(h + 8, fuzz_chance(70) ? fuzz_below(4096) : fuzz_next());
      break;
    }
    case TYPE_SCSI: {
      static const uint8_t opcodes[] = {0x00, 0x03, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x43, 0x46, 0x4a,
                                        0x51, 0x5a, 0xa0, 0xa8, 0xad, 0xbd, 0x9e, 0x2b, 0x2a, 0xbe};
      if (q == 0) {
        put32(h, (uint32_t)fuzz_below(4)); /* control queue: TMF / AN types */
      } else {
        h[0] = fuzz_chance(80) ? 1 : h[0];
        h[1] = fuzz_chance(80) ? 0 : h[1];
        h[2] = fuzz_chance(80) ? 0x40 : h[2];
        h[3] = fuzz_chance(80) ? 0 : h[3];
        h[19] = opcodes[fuzz_below(sizeof opcodes / sizeof opcodes[0])];
      }
      break;
    }
    case TYPE_FS:
      put32(h, fuzz_chance(70) ? 40 + (uint32_t)fuzz_below(200) : (uint32_t)fuzz_next());
      put32(h + 4, fuzz_chance(20) ? 26 /* FUSE_INIT */ : (uint32_t)fuzz_below(54));
      put64(h + 16, fuzz_chance(60) ? 1 : fuzz_below(64));
      if (fuzz_chance(50)) put32(h + 40, 7), put32(h + 44, (uint32_t)fuzz_below(40)); /* INIT: major 7, minor */
      break;
    case TYPE_VSOCK:
      put64(h, fuzz_chance(80) ? 3 : fuzz_next());
      put64(h + 8, fuzz_chance(80) ? 2 : fuzz_next());
      put32(h + 16, (uint32_t)fuzz_below(8));
      put32(h + 20, (uint32_t)fuzz_below(8));
      put32(h + 24, fuzz_chance(70) ? (uint32_t)fuzz_below(256) : (uint32_t)fuzz_next());
      put16(h + 28, fuzz_chance(80) ? 1 : (uint16_t)fuzz_below(4));
      put16(h + 30, (uint16_t)fuzz_below(9));
      break;
    case TYPE_CONSOLE:
      put32(h, (uint32_t)fuzz_below(4));
      put16(h + 4, (uint16_t)fuzz_below(9));
      put16(h + 6, (uint16_t)fuzz_below(2));
      break;
    case TYPE_NET:
      h[0] = (uint8_t)fuzz_below(4);
      static const uint8_t gso[] = {0, 1, 3, 4, 5, 0x80, 0x81};
      h[1] = gso[fuzz_below(sizeof gso / sizeof gso[0])];
      put16(h + 6, (uint16_t)fuzz_below(128));
      put16(h + 8, (uint16_t)fuzz_below(64));
      if (fuzz_chance(70)) h[24] = 0x88, h[25] = 0xb5; /* EtherType: local experimental, not IP */
      break;
    default: break;
  }
  memcpy(p, h, n < sizeof h ? n : sizeof h);
}

/* ---- descriptors ---- */
static uint64_t buffer_address(const struct fuzz_virtio* d, uint16_t q, uint32_t len, bool* in_data) {
  *in_data = false;
  const uint64_t pick = fuzz_below(100);
  if (pick < 65) {
    uint64_t room = data_hi(d) - data_lo(d);
    uint64_t a = data_lo(d) + fuzz_below(room);
    if (fuzz_chance(70) && len < room) a = data_lo(d) + fuzz_below(room - len); /* fits */
    *in_data = true;
    return a;
  }
  if (pick < 78 && d->type != TYPE_BALLOON) /* over the ring itself */
    return ring_slot(d, q) + fuzz_below(FUZZ_RING_BYTES);
  return fuzz_hostile_address(0, 0);
}

static void make_desc(const struct fuzz_virtio* d, uint16_t q, volatile struct virtio_desc* desc, uint16_t size,
                      uint16_t self, bool last, unsigned depth);

/* A tame round builds chains a careful driver could have built (buffers
 * that fit in RAM, device-readable before device-writable, no loops), with
 * request headers that make sense: one hostile descriptor makes a device
 * refuse the whole chain, so only tame rounds reach the request handling
 * behind that check, with odd but legal sizes and contents. */
static bool tame;
/* In a tame chain: whether the descriptors so far were device-writable. */
static bool tame_writing;

static void make_tame_desc(const struct fuzz_virtio* d, uint16_t q, volatile struct virtio_desc* desc, uint16_t size,
                           uint16_t self, bool last) {
  if (!tame_writing && fuzz_chance(40)) tame_writing = true;
  if (last && !tame_writing && fuzz_chance(70)) tame_writing = true;
  static const uint32_t lengths[] = {1, 8, 16, 40, 64, 512, 1024, 2048, 4096, 8192, 65536};
  uint32_t len = fuzz_chance(60) ? lengths[fuzz_below(sizeof lengths / sizeof lengths[0])] : (uint32_t)fuzz_below(9000);
  const uint64_t room = data_hi(d) - data_lo(d);
  if (len > room) len = (uint32_t)room;
  if (d->type == TYPE_BALLOON && len > 4096) len = 4096;
  const uint64_t addr = data_lo(d) + fuzz_below(room - len + 1);
  if (d->type == TYPE_BALLOON)
    fill_balloon((uint8_t*)(uintptr_t)addr, len, d); /* all of it: see make_desc */
  else if (!tame_writing)
    fill_request((uint8_t*)(uintptr_t)addr, len < 64 ? len : 64, d, q);
  desc->addr = addr;
  desc->len = len;
  desc->flags = (uint16_t)((last ? 0 : DESC_NEXT) | (tame_writing ? DESC_WRITE : 0));
  desc->next = (uint16_t)((self + 1) % (size ? size : 1));
}

/* An indirect table of k descriptors in the slice's indirect area. */
static uint64_t make_indirect(const struct fuzz_virtio* d, uint16_t q, unsigned k, unsigned depth) {
  const uint64_t slots = FUZZ_INDIRECT_BYTES / 16 - k;
  const uint64_t table = indirect_area(d) + 16 * fuzz_below(slots);
  volatile struct virtio_desc* t = (volatile struct virtio_desc*)(uintptr_t)table;
  for (unsigned i = 0; i < k; i++) make_desc(d, q, &t[i], (uint16_t)k, (uint16_t)i, i + 1 == k, depth + 1);
  return table;
}

static void make_desc(const struct fuzz_virtio* d, uint16_t q, volatile struct virtio_desc* desc, uint16_t size,
                      uint16_t self, bool last, unsigned depth) {
  uint16_t flags = 0;
  if (!last || fuzz_chance(5)) flags |= DESC_NEXT;
  if (fuzz_chance(45)) flags |= DESC_WRITE;
  uint16_t next;
  const uint64_t pick = fuzz_below(100);
  if (pick < 65)
    next = (uint16_t)((self + 1) % (size ? size : 1));
  else if (pick < 75)
    next = self; /* a loop of one */
  else if (pick < 82)
    next = 0; /* back to the start: a loop */
  else if (pick < 92)
    next = (uint16_t)fuzz_below(size ? size : 1);
  else
    next = (uint16_t)fuzz_next(); /* past the table */
  uint64_t addr;
  uint32_t len = fuzz_length();
  if (depth < 3 && fuzz_chance(depth ? 20 : 8)) {
    /* Indirect, sometimes with NEXT or WRITE too (both forbidden), and
     * tables inside tables. */
    const unsigned k = 1 + (unsigned)fuzz_below(8);
    addr = make_indirect(d, q, k, depth);
    len = fuzz_chance(80) ? 16 * k : fuzz_length();
    flags = (uint16_t)(DESC_INDIRECT | (fuzz_chance(10) ? flags : 0));
  } else {
    bool in_data;
    addr = buffer_address(d, q, len, &in_data);
    if (in_data && d->type == TYPE_BALLOON) {
      /* The balloon reads every byte of its buffers as page numbers to give
       * back: each must be one this kernel wrote (fill_balloon), so the
       * buffer stays inside the data area, and short. */
      const uint64_t room = data_hi(d) - addr;
      if (len > room) len = (uint32_t)room;
      if (len > 4096) len = 4096;
      fill_balloon((uint8_t*)(uintptr_t)addr, len, d);
    } else if (in_data && !(flags & DESC_WRITE)) {
      uint64_t n = data_hi(d) - addr;
      if (n > len) n = len;
      if (n > 64) n = 64;
      fill_request((uint8_t*)(uintptr_t)addr, (uint32_t)n, d, q);
    }
  }
  /* Random flags, but never INDIRECT on a buffer: its bytes (a device's
   * data) would become descriptors with addresses nobody chose. */
  if (fuzz_chance(3) && !(flags & DESC_INDIRECT)) flags = (uint16_t)fuzz_next() & (uint16_t)~DESC_INDIRECT;
  desc->addr = addr;
  desc->len = len;
  desc->flags = flags;
  desc->next = next;
}

/* Publishes 1-4 chains on queue q whose rings are at their slot. */
static void publish(const struct transport* t, uint16_t q, uint16_t size) {
  struct fuzz_virtio* d = t->d;
  const uint64_t slot = ring_slot(d, q);
  const uint16_t table = size == 0 ? 1 : size > 256 ? 256 : size;
  volatile struct virtio_desc* desc = (volatile struct virtio_desc*)(uintptr_t)slot;
  volatile uint16_t* avail = (volatile uint16_t*)(uintptr_t)(slot + 4096);
  const unsigned chains = tame ? 1 : 1 + (unsigned)fuzz_below(4);
  uint16_t heads[4];
  for (unsigned c = 0; c < chains; c++) {
    const uint16_t head = (uint16_t)fuzz_below(table);
    const unsigned length = 1 + (unsigned)fuzz_below(6);
    uint16_t at = head;
    tame_writing = false;
    for (unsigned i = 0; i < length; i++) {
      if (tame) {
        make_tame_desc(d, q, &desc[at], table, at, i + 1 == length || (at + 1) % table == head);
        if (i + 1 == length || (at + 1) % table == head) break;
        at = (uint16_t)((at + 1) % table);
        continue;
      }
      make_desc(d, q, &desc[at], table, at, i + 1 == length, 0);
      if (i + 1 < length) {
        desc[at].next = (uint16_t)((at + 1) % table);
        if (fuzz_chance(10)) desc[at].next = head; /* a loop through the chain */
        at = desc[at].next;
        if (at == head) break;
      }
    }
    heads[c] = head;
  }
  uint16_t idx = avail[1];
  for (unsigned c = 0; c < chains; c++) {
    avail[2 + (idx + c) % table] = tame || fuzz_chance(90) ? heads[c] : (uint16_t)fuzz_next();
  }
  avail[0] = (uint16_t)fuzz_below(2);       /* flags: NO_INTERRUPT */
  avail[2 + table] = (uint16_t)fuzz_next(); /* used_event */
  const uint64_t jump = tame ? 0 : fuzz_below(100);
  if (jump < 80)
    idx = (uint16_t)(idx + chains);
  else if (jump < 85)
    idx = (uint16_t)(idx + size);
  else if (jump < 90)
    idx = (uint16_t)(idx + 0x8000);
  else if (jump < 95)
    idx = (uint16_t)(idx - 1);
  else
    idx = (uint16_t)fuzz_next();
  compiler_barrier();
  avail[1] = idx;
  memory_fence();
}

static uint16_t pick_size(uint16_t max) {
  const uint64_t pick = fuzz_below(100);
  if (pick < 35) return max;
  if (pick < 70) {
    uint16_t n = (uint16_t)(1u << fuzz_below(9)); /* 1 .. 256 */
    return max && n > max ? max : n;
  }
  if (pick < 75) return 0;
  if (pick < 80) return (uint16_t)(max + 1);
  if (pick < 90) return (uint16_t)(1 + fuzz_below(255)); /* not a power of two (packed rings allow it) */
  return (uint16_t)fuzz_next();
}

void fuzz_virtqueue(struct fuzz_virtio* d) {
  struct transport t;
  if (!open_transport(d, &t)) {
    fuzz_stats.skipped++;
    return;
  }
  tame = fuzz_chance(40);
  const bool fresh = fuzz_chance(tame ? 50 : 75);
  if (fresh) {
    status_write(&t, 0);
    (void)status_read(&t);
    status_write(&t, STATUS_ACK);
    status_write(&t, STATUS_ACK | STATUS_DRIVER);
    const uint64_t offered = device_features(&t, 0) | (uint64_t)device_features(&t, 1) << 32;
    uint64_t wanted;
    const uint64_t pick = fuzz_below(100);
    if (pick < 40 || tame)
      wanted = offered;
    else if (pick < 70)
      wanted = offered & (fuzz_next() | VIRTIO_F_VERSION_1);
    else if (pick < 85)
      wanted = fuzz_next();
    else
      wanted = offered | (1ull << fuzz_below(64));
    driver_features(&t, 0, (uint32_t)wanted);
    driver_features(&t, 1, (uint32_t)(wanted >> 32));
    if (!tame && fuzz_chance(50)) driver_features(&t, (uint32_t)fuzz_below(4), (uint32_t)fuzz_next());
    if (tame || fuzz_chance(90)) status_write(&t, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
    (void)status_read(&t);
    if (!d->mmio && fuzz_chance(50))
      w16(&t, PCI_CONFIG_MSIX_VECTOR, (uint16_t)(fuzz_chance(50) ? 0xffff : fuzz_below(8)));
  }
  const uint16_t queues = d->mmio ? FUZZ_QUEUE_SLOTS : r16(&t, PCI_NUM_QUEUES);
  const uint16_t q = fuzz_chance(92) ? (uint16_t)fuzz_below(queues ? queues : 1) : (uint16_t)fuzz_next();
  queue_select(&t, q);
  const uint16_t max = queue_max(&t);
  FUZZ_TRACE("virtqueue: %s type %u queue %u (max %u)%s%s\n", d->mmio ? "mmio" : "pci", d->type, q, max,
             fresh ? " fresh" : "", tame ? " tame" : "");
  uint16_t size = max > 256 ? 256 : max;
  if (fresh) {
    queue_enable(&t, 0); /* an enabled queue's settings are read-only: hostvisor may or may not say so */
    size = tame ? (uint16_t)(max < 16 ? max : 16 << fuzz_below(3)) : pick_size(max);
    if (tame && size > max) size = max;
    queue_size(&t, size);
    const uint64_t slot = ring_slot(d, q);
    uint64_t desc = slot, driver = slot + 4096, device = slot + 5120;
    if (tame || fuzz_chance(80)) {
      /* A new queue starts at index 0, as the device does after a reset. */
      *(volatile uint32_t*)(uintptr_t)driver = 0;
      *(volatile uint32_t*)(uintptr_t)device = 0;
    }
    const uint64_t placement = tame ? 100 : fuzz_below(100);
    if (size > 256 || placement < 5)
      desc = fuzz_hostile_address(0, 0); /* MMIO, past RAM */
    else if (placement < 10)
      driver = device = desc; /* all three overlap */
    else if (placement < 15)
      desc += 1 + fuzz_below(15), device += 1 + fuzz_below(3); /* misaligned */
    else if (placement < 20)
      device = driver; /* used over avail */
    if (placement < 5 && fuzz_chance(50)) device = fuzz_hostile_address(0, 0);
    queue_addresses(&t, desc, driver, device);
    if (!d->mmio)
      w16(&t, PCI_QUEUE_MSIX_VECTOR, (uint16_t)(fuzz_chance(30) ? 0xffff : fuzz_below(fuzz_chance(90) ? 8 : 0x10000)));
    if (tame || fuzz_chance(95)) queue_enable(&t, 1);
    if (tame || fuzz_chance(90)) status_write(&t, STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    (void)status_read(&t);
  }
  publish(&t, q, size ? size : 1);
  notify(&t, q, tame || fuzz_chance(90) ? q : (uint32_t)fuzz_next());

  /* After DRIVER_OK: change things under the device's feet. */
  switch (tame ? 9 : fuzz_below(10)) {
    case 0:
      queue_size(&t, pick_size(max));
      notify(&t, q, q);
      break;
    case 1: {
      const uint64_t slot = ring_slot(d, q);
      queue_addresses(&t, fuzz_chance(50) ? slot + 16 * fuzz_below(64) : fuzz_hostile_address(0, 0), slot + 4096,
                      slot + 5120);
      notify(&t, q, q);
      break;
    }
    case 2: {
      volatile uint16_t* avail = (volatile uint16_t*)(uintptr_t)(ring_slot(d, q) + 4096);
      avail[1] = (uint16_t)fuzz_next();
      notify(&t, q, q);
      break;
    }
    case 3: status_write(&t, 0); break; /* reset with requests in flight */
    case 4:
      queue_enable(&t, 0);
      notify(&t, q, q);
      break;
    default: break;
  }
  /* Interrupt status, device configuration. */
  if (d->mmio) {
    const uint32_t isr = r32(&t, MMIO_INTERRUPT_STATUS);
    w32(&t, MMIO_INTERRUPT_ACK, fuzz_chance(80) ? isr : (uint32_t)fuzz_next());
  } else if (t.isr) {
    (void)mmio_read(t.isr, 1);
  }
  if (t.device_cfg && fuzz_chance(30)) {
    const uint64_t off = fuzz_below(64);
    if (fuzz_chance(50))
      (void)mmio_read(t.device_cfg + off, 1);
    else
      mmio_write(t.device_cfg + off, 1, fuzz_next());
  }
}

void fuzz_virtio_reset_all(void) {
  for (unsigned i = 0; i < fuzz_virtio_count; i++) {
    struct transport t;
    if (open_transport(&fuzz_virtios[i], &t)) status_write(&t, 0);
  }
}
