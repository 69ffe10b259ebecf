/* The driver side of a split virtqueue (virtio 1.2, 2.7): descriptor chains
 * from a free list, the available ring, notification suppression both ways
 * (avail_event / NO_NOTIFY, used_event), and collecting used buffers on
 * interrupts. */
#include "virtio.h"

void virtq_init(struct virtq* q, const char* name, uint16_t index) {
  memset(q, 0, sizeof(*q));
  q->name = name;
  q->index = index;
  q->size = VIRTQ_SIZE;
  for (uint16_t i = 0; i < VIRTQ_SIZE; i++) q->desc[i].next = (uint16_t)(i + 1);
  q->free_head = 0;
  q->free_count = VIRTQ_SIZE;
}

/* The queue each interrupt vector announces, for the handler. */
static struct virtq* queue_of_vector[IDT_VECTORS];

static void virtq_interrupt(uint8_t vector) {
  struct virtq* q = queue_of_vector[vector];
  if (!q) return;
  const uint16_t seen = *(volatile uint16_t*)&q->used.idx;
  /* The hook's stores land before the announcement a waiting CPU reads. */
  if (q->on_interrupt) q->on_interrupt(q);
  compiler_barrier();
  q->used_idx_at_interrupt = seen;
}

void virtq_attach_vector(struct virtq* q, uint8_t vector) {
  q->vector = vector;
  queue_of_vector[vector] = q;
  irq_register(vector, virtq_interrupt);
}

/* 2.7.10: the other side wants an event once the index moves past `event`. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
  return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* The later of two ring indices (they are never 32768 apart). */
static uint16_t later(uint16_t a, uint16_t b) { return (uint16_t)(b - a) < 0x8000u ? b : a; }

/* Brings the covered used entries up to what interrupts announced and, with
 * EVENT_IDX, moves used_event there, so the device interrupts for the first
 * entry not covered yet (2.7.10). An entry the device added while it still
 * saw the older used_event legitimately came without an interrupt: the ones
 * visible right after the move are covered, and used_event moves again. An
 * unchanged used_event excuses nothing: the device already judged every
 * entry against it. */
static void cover_announced(struct virtq* q) {
  q->covered = later(q->covered, q->used_idx_at_interrupt);
  if (!q->event_idx) return;
  while (q->used_event != q->covered) {
    q->used_event = q->covered;
    *(volatile uint16_t*)&q->avail.used_event = q->used_event;
    memory_fence(); /* used_event before reading used.idx */
    q->covered = later(q->covered, *(volatile uint16_t*)&q->used.idx);
  }
}

uint16_t virtq_add(struct virtq* q, const struct virtq_buffer* buffers, unsigned count) {
  if (count == 0 || count > q->free_count)
    test_fail("%s: a chain of %u buffers does not fit in %u free descriptors", q->name, count, q->free_count);
  const uint16_t head = q->free_head;
  uint16_t at = head;
  for (unsigned i = 0; i < count; i++) {
    const uint16_t next_free = q->desc[at].next;
    q->desc[at].addr = (uint64_t)(uintptr_t)buffers[i].addr;
    q->desc[at].len = buffers[i].len;
    q->desc[at].flags =
        (uint16_t)((buffers[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0));
    /* The chain's links are the free list's: the next free descriptor. */
    if (i + 1 == count) q->desc[at].next = 0;
    at = next_free;
  }
  q->free_head = at;
  q->free_count = (uint16_t)(q->free_count - count);
  q->chain_length[head] = (uint8_t)count;

  /* used_event in place before the device can use the chain. */
  cover_announced(q);
  q->avail.ring[q->avail_idx % q->size] = head;
  compiler_barrier(); /* x86 keeps stores in order; the ring entry before the index (2.7.13) */
  q->avail_idx++;
  *(volatile uint16_t*)&q->avail.idx = q->avail_idx;
  q->in_flight++;
  return head;
}

void virtq_kick(struct virtq* q) {
  memory_fence(); /* the index stores before reading the device's suppression state (2.7.13.4) */
  const bool notify = q->event_idx ? need_event(*(volatile uint16_t*)&q->used.avail_event, q->avail_idx, q->kicked_idx)
                                   : !(*(volatile uint16_t*)&q->used.flags & 1 /* VIRTQ_USED_F_NO_NOTIFY */);
  q->kicked_idx = q->avail_idx;
  q->interrupts_at_kick = irq_count(q->vector);
  if (notify) {
    *q->notify = q->index;
    q->notifications++;
  } else {
    q->notifications_suppressed++;
  }
}

uint16_t virtq_pending_used(const struct virtq* q) {
  return (uint16_t)(*(volatile const uint16_t*)&q->used.idx - q->last_used);
}

/* Takes one used entry and frees its chain. */
static struct virtq_completion take_used(struct virtq* q) {
  const struct virtq_used_elem e = *(volatile struct virtq_used_elem*)&q->used.ring[q->last_used % q->size];
  q->last_used++;
  if (e.id >= q->size || q->chain_length[e.id] == 0)
    test_fail("%s: the device returned chain %u, which is not in flight", q->name, e.id);
  uint16_t tail = (uint16_t)e.id;
  for (unsigned i = 1; i < q->chain_length[e.id]; i++) tail = q->desc[tail].next;
  q->desc[tail].next = q->free_head;
  q->free_head = (uint16_t)e.id;
  q->free_count = (uint16_t)(q->free_count + q->chain_length[e.id]);
  q->chain_length[e.id] = 0;
  q->in_flight--;
  q->chains++;
  return (struct virtq_completion){(uint16_t)e.id, e.len};
}

struct collect {
  struct virtq* q;
  struct virtq_completion* out;
  unsigned want, got;
};

/* Collects what the device returned; done when all chains are back and
 * covered (announced by an interrupt, or excused by cover_announced()).
 * Runs with interrupts off. */
static bool collected(const void* arg) {
  struct collect* c = (struct collect*)arg;
  struct virtq* q = c->q;
  while (c->got < c->want && virtq_pending_used(q) != 0) c->out[c->got++] = take_used(q);
  cover_announced(q);
  while (c->got < c->want && virtq_pending_used(q) != 0) c->out[c->got++] = take_used(q);
  return c->got == c->want && (uint16_t)(q->covered - q->last_used) < 0x8000u;
}

void virtq_wait(struct virtq* q, struct virtq_completion* out, unsigned count) {
  if (count > q->in_flight) test_fail("%s: waiting for %u chains, %u in flight", q->name, count, q->in_flight);
  struct collect c = {q, out, count, 0};
  if (!wait_until(collected, &c)) {
    const uint8_t status = q->transport ? virtio_pci_status(q->transport) : 0;
    if (c.got == count)
      test_fail(
          "%s: the device returned the buffers (used.idx %u) but no MSI-X interrupt (vector 0x%x) came; "
          "device status 0x%02x",
          q->name, q->used.idx, q->vector, status);
    test_fail(
        "%s: the device returned %u of %u chains within the deadline (avail.idx %u, used.idx %u, %u notifies, "
        "%u suppressed); device status 0x%02x",
        q->name, c.got, count, q->avail_idx, q->used.idx, q->notifications, q->notifications_suppressed, status);
  }
}

uint32_t virtq_transfer(struct virtq* q, const struct virtq_buffer* buffers, unsigned count) {
  const uint16_t head = virtq_add(q, buffers, count);
  virtq_kick(q);
  struct virtq_completion done;
  virtq_wait(q, &done, 1);
  if (done.head != head) test_fail("%s: the device returned chain %u, expected %u", q->name, done.head, head);
  return done.len;
}
