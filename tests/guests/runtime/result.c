/* PASS/FAIL reporting: a line on the console, then the debug-exit port, which
 * ends the VM with status (value << 1) | 1. */
#include "hvtest.h"

void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

static __attribute__((noreturn)) void debug_exit(uint8_t value) {
  outb(HVT_DEBUG_EXIT_PORT, value);
  /* Only reached when nothing listens on the port. */
  print("debug-exit port 0x%x did not end the VM; halting\n", HVT_DEBUG_EXIT_PORT);
  halt_forever();
}

void test_pass(void) {
  print("PASS %s\n", test_scenario);
  debug_exit(HVT_EXIT_PASS);
}

void test_fail(const char* fmt, ...) {
  print("FAIL %s: ", test_scenario);
  va_list args;
  va_start(args, fmt);
  vprint(fmt, args);
  va_end(args);
  print("\n");
  debug_exit(HVT_EXIT_FAIL);
}
