/* External interrupts: which vectors a scenario expects, how often each
 * arrived, the EOI, and waiting for them with `sti; hlt`. */
#include "hvtest.h"

#define IRQ_VECTOR_COUNT (IRQ_LAST_VECTOR - IRQ_FIRST_VECTOR + 1)

/* The watchdog timer of wait_until(). */
#define WAIT_TIMER_VECTOR 0x3e
/* About 10 ms at a 250 MHz APIC timer, 2.5 ms at KVM's 1 GHz, 100 ms at the
 * software CPU's 25 MHz: often enough to notice the deadline, rarely enough
 * to cost little on a slow CPU. */
#define WAIT_TIMER_COUNT 2500000u
/* Ten seconds of a 2 GHz TSC (four to twenty seconds on real TSC rates). */
#define WAIT_TSC_BUDGET 20000000000ull

static bool registered[IRQ_VECTOR_COUNT];
static irq_handler handlers[IRQ_VECTOR_COUNT];
static volatile uint32_t counts[IRQ_VECTOR_COUNT];

static bool in_range(uint8_t vector) { return vector >= IRQ_FIRST_VECTOR && vector <= IRQ_LAST_VECTOR; }

void irq_register(uint8_t vector, irq_handler handler) {
  if (!in_range(vector))
    test_fail("irq_register: vector %u is outside %u-%u", vector, IRQ_FIRST_VECTOR, IRQ_LAST_VECTOR);
  handlers[vector - IRQ_FIRST_VECTOR] = handler;
  registered[vector - IRQ_FIRST_VECTOR] = true;
}

uint32_t irq_count(uint8_t vector) { return in_range(vector) ? counts[vector - IRQ_FIRST_VECTOR] : 0; }

void interrupt_dispatch(uint8_t vector) {
  const unsigned i = vector - IRQ_FIRST_VECTOR;
  if (!in_range(vector) || !registered[i]) test_fail("unexpected interrupt vector 0x%x", vector);
  /* The handler runs before the count moves, so a CPU that waits for the
   * count also sees what the handler stored (x86 keeps stores in order). */
  if (handlers[i]) handlers[i](vector);
  compiler_barrier();
  counts[i]++;
  if (vector != lapic_spurious_vector()) lapic_eoi();
}

bool wait_until(bool (*done)(const void* arg), const void* arg) { return wait_until_ticks(done, arg, WAIT_TSC_BUDGET); }

bool wait_until_ticks(bool (*done)(const void* arg), const void* arg, uint64_t tsc_ticks) {
  irq_register(WAIT_TIMER_VECTOR, NULL);
  interrupts_off();
  bool met = done(arg);
  if (met) return true;
  lapic_timer_periodic(WAIT_TIMER_VECTOR, WAIT_TIMER_COUNT);
  const uint64_t start = rdtsc();
  while (!met && rdtsc() - start < tsc_ticks) {
    /* STI takes effect after the next instruction, so an interrupt that
     * arrives after the check still wakes the HLT. */
    __asm__ volatile("sti; hlt; cli" ::: "memory");
    met = done(arg);
  }
  lapic_timer_stop();
  return met;
}
