/* Computes a checksum in eight steps with the local APIC timer running and
 * interrupting, printing the running value after each step, then waits for
 * a few more timer interrupts (halted in between) and prints the result. The
 * output depends only on the computation: the cross-backend state test
 * (tests/integration) pauses the kernel mid-computation or halted on one
 * backend, finishes it on the other, and compares the output with an
 * uninterrupted run. */
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

  /* Halted with the timer running: the test may move the kernel here too.
   * (Not wait_until(): it takes the LAPIC timer for its own watchdog, and
   * its TSC deadline would not survive a host that cannot restore the TSC.
   * A timer that stopped hangs the kernel; the host test's deadline ends it.) */
  const uint32_t target = ticks + kTicksAfter;
  while (ticks < target) __asm__ volatile("hlt" ::: "memory");
  interrupts_off();
  lapic_timer_stop();
  print("checksum %lx\n", sum);
  test_pass();
}
