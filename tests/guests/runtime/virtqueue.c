/* The driver side of a split virtqueue (virtio 1.2, 2.7): descriptor chains,
 * the available ring, notification suppression both ways (NO_NOTIFY /
 * avail_event, used_event), and waiting for used buffers by interrupt. */
#include "virtio.h"

void virtq_init(struct virtq* q, const char* name, uint16_t index) {
  memset(q, 0, sizeof(*q));
  q->name = name;
  q->index = index;
  q->size = VIRTQ_SIZE;
}

/* 2.7.10: the other side wants an event once the index moves past `event`. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
  return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

uint16_t virtq_submit(struct virtq* q, const struct virtq_buffer* buffers, unsigned count) {
  if (count == 0 || count > q->size) test_fail("%s: a chain of %u buffers does not fit", q->name, count);
  if (q->avail_idx != q->last_used) test_fail("%s: submit while a chain is still with the device", q->name);
  const uint16_t head = q->next_desc;
  uint16_t at = head;
  for (unsigned i = 0; i < count; i++) {
    const uint16_t next = (uint16_t)((at + 1) % q->size);
    q->desc[at] = (struct virtq_desc){
        .addr = (uint64_t)(uintptr_t)buffers[i].addr,
        .len = buffers[i].len,
        .flags =
            (uint16_t)((buffers[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0)),
        .next = i + 1 < count ? next : 0,
    };
    at = next;
  }
  /* The next chain starts elsewhere, so heads vary and chains wrap around
   * the end of the table. */
  q->next_desc = (uint16_t)((head + count + 1) % q->size);

  /* Ask for an interrupt on the very next used entry. */
  if (q->event_idx) q->avail.used_event = q->last_used;
  const uint16_t old_idx = q->avail_idx;
  q->avail.ring[old_idx % q->size] = head;
  compiler_barrier(); /* x86 keeps stores in order; the ring entry before the index (2.7.13) */
  q->avail_idx++;
  *(volatile uint16_t*)&q->avail.idx = q->avail_idx;
  memory_fence(); /* the index store before reading the device's suppression state (2.7.13.4) */

  const bool notify = q->event_idx ? need_event(*(volatile uint16_t*)&q->used.avail_event, q->avail_idx, old_idx)
                                   : !(*(volatile uint16_t*)&q->used.flags & 1 /* VIRTQ_USED_F_NO_NOTIFY */);
  q->interrupts_at_submit = irq_count(q->vector);
  if (notify) {
    *q->notify = q->index;
    q->notifications++;
  } else {
    q->notifications_suppressed++;
  }
  return head;
}

uint16_t virtq_pending_used(const struct virtq* q) {
  return (uint16_t)(*(volatile const uint16_t*)&q->used.idx - q->last_used);
}

static bool used_and_interrupted(const void* arg) {
  const struct virtq* q = arg;
  return virtq_pending_used(q) != 0 && irq_count(q->vector) != q->interrupts_at_submit;
}

uint32_t virtq_wait_used(struct virtq* q, uint16_t head) {
  if (!wait_until(used_and_interrupted, q)) {
    const uint8_t status = q->transport ? virtio_pci_status(q->transport) : 0;
    if (virtq_pending_used(q) != 0)
      test_fail(
          "%s: the device returned the buffers (used.idx %u) but no MSI-X interrupt (vector 0x%x) came; "
          "device status 0x%02x",
          q->name, q->used.idx, q->vector, status);
    test_fail(
        "%s: the device did not return chain %u within the deadline (avail.idx %u, used.idx %u, %u notifies, "
        "%u suppressed); device status 0x%02x",
        q->name, head, q->avail_idx, q->used.idx, q->notifications, q->notifications_suppressed, status);
  }
  const struct virtq_used_elem e = *(volatile struct virtq_used_elem*)&q->used.ring[q->last_used % q->size];
  q->last_used++;
  if (virtq_pending_used(q) != 0) test_fail("%s: the device returned more chains than were submitted", q->name);
  if (e.id != head) test_fail("%s: the device returned chain %u, expected %u", q->name, e.id, head);
  return e.len;
}
