/* Starting the other CPUs the way firmware-less kernels do: the real-mode
 * trampoline (boot/smp_trampoline.S) copied below 1 MiB, then INIT and
 * STARTUP IPIs through the local APIC (the MP specification's sequence).
 * Linked, with the trampoline, only into the kernels that start APs. */
#include "hvtest.h"

#define TRAMPOLINE_BASE 0x40000ul /* page-aligned, below 1 MiB, clear of the loaders' boot structures */
enum { LAPIC_ICR_LOW = 0x300, LAPIC_ICR_HIGH = 0x310 };
enum { ICR_INIT = 0x500, ICR_STARTUP = 0x600, ICR_ASSERT = 0x4000, ICR_ALL_BUT_SELF = 0xc0000, ICR_PENDING = 0x1000 };

extern const char smp_trampoline_start[], smp_trampoline_end[];
extern uint64_t smp_trampoline_cr3, smp_trampoline_stack, smp_trampoline_entry;

static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t*)(uintptr_t)(LAPIC_BASE + reg) = v; }

static void send_ipi(uint32_t command) {
  lapic_write(LAPIC_ICR_HIGH, 0);
  lapic_write(LAPIC_ICR_LOW, command);
  for (int spins = 0; spins < 100000 && (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING); spins++) __asm__ volatile("pause");
}

static void delay(int loops) {
  for (volatile int i = 0; i < loops; i++) {
  }
}

void ap_start(void (*entry)(void), void* stack_top, const volatile uint32_t* arrived) {
  /* The trampoline finds the BSP's page tables, the stack and the entry in its data slots. */
  smp_trampoline_cr3 = read_cr3();
  smp_trampoline_stack = (uint64_t)(uintptr_t)stack_top;
  smp_trampoline_entry = (uint64_t)(uintptr_t)entry;
  memcpy((void*)TRAMPOLINE_BASE, smp_trampoline_start, (size_t)(smp_trampoline_end - smp_trampoline_start));

  send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
  delay(10000);
  send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
  delay(1000);
  /* The second STARTUP is for CPUs that missed the first. */
  if (!*arrived) send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
}
