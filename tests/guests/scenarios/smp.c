/* Starts the second CPU the way firmware-less kernels do (runtime/ap_start.c:
 * a real-mode trampoline below 1 MiB, then INIT and two STARTUP IPIs through
 * the local APIC). The AP climbs to 64-bit mode on the BSP's page tables, and the two
 * CPUs meet on a shared counter: the AP checks in, waits for the BSP's go,
 * checks in again. Run with --cpus 2 (QEMU: -smp 2). */
#include "hvtest.h"

const char test_scenario[] = "smp";

#define LAPIC_SVR 0xf0

static volatile uint32_t checked_in;
static volatile uint32_t go;
static volatile uint32_t ap_apic_id;
static uint8_t ap_stack[4096] __attribute__((aligned(16)));

static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v; }

/* Where the AP lands in 64-bit mode. */
__attribute__((noreturn)) void ap_main(void);
void ap_main(void) {
  ap_apic_id = lapic_id();
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) __asm__ volatile("pause");
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
  halt_forever();
}

static bool wait_for_count(uint32_t want) {
  for (long spins = 0; spins < 3000000; spins++) {
    if (__atomic_load_n(&checked_in, __ATOMIC_SEQ_CST) >= want) return true;
    __asm__ volatile("pause");
  }
  return false;
}

void test_main(const struct boot_info* info) {
  print("smp: booted as %s\n", info->format_name);
  uint32_t bsp_id = lapic_id();
  lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x100); /* software-enable the local APIC */

  ap_start(ap_main, ap_stack + sizeof(ap_stack), &checked_in);

  if (!wait_for_count(1)) test_fail("the AP never checked in after INIT/SIPI (is --cpus 2 set?)");
  print("smp: AP with APIC ID %u checked in (BSP APIC ID %u)\n", ap_apic_id, bsp_id);
  if (ap_apic_id == bsp_id) test_fail("the AP reports the BSP's APIC ID %u", bsp_id);
  __atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
  if (!wait_for_count(2)) test_fail("the AP did not see the BSP's go");
  uint32_t final_count = __atomic_load_n(&checked_in, __ATOMIC_SEQ_CST);
  if (final_count != 2) test_fail("counter is %u, expected 2 (more than one AP?)", final_count);
  print("smp: both CPUs met on the shared counter\n");
  test_pass();
}
