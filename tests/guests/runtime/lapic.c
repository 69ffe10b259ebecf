/* The local APIC in xAPIC mode, through its registers at 0xFEE00000 (the
 * loaders' identity map covers it): enable, EOI, and the timer the waits use
 * as a watchdog. */
#include "hvtest.h"

enum {
  LAPIC_ID = 0x20,
  LAPIC_TPR = 0x80,
  LAPIC_EOI = 0xb0,
  LAPIC_SVR = 0xf0,
  LAPIC_LVT_TIMER = 0x320,
  LAPIC_LVT_LINT0 = 0x350,
  LAPIC_TIMER_INITIAL = 0x380,
  LAPIC_TIMER_DIVIDE = 0x3e0,
};
enum { SVR_ENABLE = 0x100, LVT_MASKED = 0x10000, LVT_TIMER_PERIODIC = 0x20000, DIVIDE_BY_1 = 0xb };

static uint8_t spurious_vector_in_use; /* 0: the APIC was not enabled here */

static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v; }

void lapic_enable(uint8_t spurious_vector) {
  /* The spurious vector is delivered without an in-service bit: it must not
   * be acknowledged, which interrupt_dispatch() learns from its registration. */
  irq_register(spurious_vector, NULL);
  spurious_vector_in_use = spurious_vector;
  lapic_write(LAPIC_TPR, 0);
  lapic_write(LAPIC_SVR, SVR_ENABLE | spurious_vector);
  /* Firmware (SeaBIOS under QEMU) leaves the 8259 PICs programmed for the
   * real-mode vectors 8-15 with the PIT ticking, and LINT0 in ExtINT mode: once
   * interrupts are on, IRQ 0 would arrive as vector 8 and look like a double
   * fault. The local APIC is these kernels' only interrupt source, so mask
   * the PICs and LINT0. */
  outb(0x21, 0xff);
  outb(0xa1, 0xff);
  lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
}

uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

void lapic_timer_periodic(uint8_t vector, uint32_t initial_count) {
  lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_1);
  lapic_write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | vector);
  lapic_write(LAPIC_TIMER_INITIAL, initial_count); /* starts the count */
}

void lapic_timer_stop(void) {
  lapic_write(LAPIC_TIMER_INITIAL, 0);
  lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
}

uint8_t lapic_spurious_vector(void) { return spurious_vector_in_use; }
