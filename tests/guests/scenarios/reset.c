/* Asks the i8042 keyboard controller to pulse the reset line (command 0xFE).
 * The VMM must end (hostvisor reports a reset and exits non-zero); the kernel
 * fails if it is still running afterwards. */
#include "hvtest.h"

const char test_scenario[] = "reset";

enum { I8042_STATUS = 0x64, I8042_COMMAND = 0x64, STATUS_INPUT_FULL = 0x02, CMD_PULSE_RESET = 0xfe };

void test_main(const struct boot_info* info) {
  print("reset: booted as %s\n", info->format_name);
  for (int spins = 0; spins < 100000 && (inb(I8042_STATUS) & STATUS_INPUT_FULL); spins++) {
  }
  print("reset: resetting through the i8042 (0xFE to port 0x64)\n");
  outb(I8042_COMMAND, CMD_PULSE_RESET);
  for (volatile int spins = 0; spins < 200000; spins++) {
  }
  test_fail("still running after the i8042 reset command");
}
