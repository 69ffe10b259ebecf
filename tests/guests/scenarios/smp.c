/* Starts the second CPU the way firmware-less kernels do: a real-mode
 * trampoline below 1 MiB, then INIT and two STARTUP IPIs through the local
 * APIC. The AP climbs to 64-bit mode on the BSP's page tables, and the two
 * CPUs meet on a shared counter: the AP checks in, waits for the BSP's go,
 * checks in again. Run with --cpus 2 (QEMU: -smp 2). */
#include "hvtest.h"

const char test_scenario[] = "smp";

#define TRAMPOLINE_BASE 0x40000ul /* page-aligned, below 1 MiB, clear of the loaders' boot structures */
#define LAPIC_BASE 0xfee00000ul
enum { LAPIC_ID = 0x20, LAPIC_SVR = 0xf0, LAPIC_ICR_LOW = 0x300, LAPIC_ICR_HIGH = 0x310 };
enum { ICR_INIT = 0x500, ICR_STARTUP = 0x600, ICR_ASSERT = 0x4000, ICR_ALL_BUT_SELF = 0xc0000, ICR_PENDING = 0x1000 };

/* boot/smp_trampoline.S */
extern const char smp_trampoline_start[], smp_trampoline_end[];
extern uint64_t smp_trampoline_cr3, smp_trampoline_stack, smp_trampoline_entry;

static volatile uint32_t checked_in;
static volatile uint32_t go;
static volatile uint32_t ap_apic_id;
static uint8_t ap_stack[4096] __attribute__((aligned(16)));

static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v; }

/* Where the AP lands in 64-bit mode. */
__attribute__((noreturn)) void ap_main(void);
void ap_main(void) {
  ap_apic_id = lapic_read(LAPIC_ID) >> 24;
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) __asm__ volatile("pause");
  __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
  halt_forever();
}

static void send_ipi(uint32_t command) {
  lapic_write(LAPIC_ICR_HIGH, 0);
  lapic_write(LAPIC_ICR_LOW, command);
  for (int spins = 0; spins < 100000 && (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING); spins++) __asm__ volatile("pause");
}

static bool wait_for_count(uint32_t want) {
  for (long spins = 0; spins < 3000000; spins++) {
    if (__atomic_load_n(&checked_in, __ATOMIC_SEQ_CST) >= want) return true;
    __asm__ volatile("pause");
  }
  return false;
}

static void delay(int loops) {
  for (volatile int i = 0; i < loops; i++) {
  }
}

void test_main(const struct boot_info* info) {
  print("smp: booted as %s\n", info->format_name);
  uint32_t bsp_id = lapic_read(LAPIC_ID) >> 24;
  lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x100); /* software-enable the local APIC */

  /* The trampoline finds the BSP's page tables, its stack and ap_main in its data slots. */
  smp_trampoline_cr3 = read_cr3();
  smp_trampoline_stack = (uint64_t)(uintptr_t)(ap_stack + sizeof(ap_stack));
  smp_trampoline_entry = (uint64_t)(uintptr_t)ap_main;
  memcpy((void*)TRAMPOLINE_BASE, smp_trampoline_start, (size_t)(smp_trampoline_end - smp_trampoline_start));

  /* INIT, then STARTUP twice (the MP specification's sequence). */
  send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
  delay(10000);
  send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
  delay(1000);
  if (!__atomic_load_n(&checked_in, __ATOMIC_SEQ_CST))
    send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));

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
