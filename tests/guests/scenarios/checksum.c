/* Computes a checksum in eight steps with the local APIC timer running and
 * interrupting, printing the running value after each step, then waits for
 * a few more timer interrupts and prints the result. The output depends only
 * on the computation: the cross-backend state test (tests/integration)
 * pauses the kernel mid-computation on one backend, finishes it on the other,
 * and compares the output with an uninterrupted run. */
#include "hvtest.h"

const char test_scenario[] = "checksum";

enum { kTimerVector = 0x30, kSpuriousVector = 0x3f, kSteps = 8, kRoundsPerStep = 4000, kTicksAfter = 3 };
/* 1 ms on KVM (1 GHz APIC timer), 40 ms on the software CPU (25 MHz). */
enum { kTimerCount = 1000000 };

static volatile uint32_t ticks;

static void on_tick(uint8_t vector) {
  (void)vector;
  ticks++;
}

/* About ten seconds of a 2 GHz TSC: a timer that stopped fails the test. */
static const uint64_t kWaitTscBudget = 20000000000ull;

void test_main(const struct boot_info* info) {
  (void)info;
  idt_install();
  lapic_enable(kSpuriousVector);
  irq_register(kTimerVector, on_tick);
  lapic_timer_periodic(kTimerVector, kTimerCount);
  interrupts_on();

  uint64_t sum = 0xcbf29ce484222325ull; /* FNV-1a over the round numbers */
  for (uint32_t step = 0; step < kSteps; ++step) {
    for (uint32_t round = 0; round < kRoundsPerStep; ++round) {
      sum ^= step * kRoundsPerStep + round;
      sum *= 0x100000001b3ull;
    }
    print("step %u: %lx\n", step, sum);
  }

  /* (Not wait_until(): it takes the LAPIC timer for its own watchdog.) */
  const uint32_t target = ticks + kTicksAfter;
  const uint64_t start = rdtsc();
  while (ticks < target && rdtsc() - start < kWaitTscBudget) __asm__ volatile("hlt" ::: "memory");
  interrupts_off();
  if (ticks < target) test_fail("the timer stopped interrupting (%u ticks)", ticks);
  lapic_timer_stop();
  print("checksum %lx\n", sum);
  test_pass();
}
