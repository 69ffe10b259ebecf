/* Counts on the serial port, "count 0", "count 1", ..., until the host
 * stops it: the console pause test (tests/integration) presses Ctrl-A p
 * while it prints and checks that the lines stay an unbroken sequence.
 * Every character is a port write and every line waits on the UART's line
 * status, so the vCPU is in and out of port I/O all the time. */
#include "hvtest.h"

const char test_scenario[] = "count";

void test_main(const struct boot_info* info) {
  (void)info;
  for (uint64_t n = 0;; ++n) print("count %lu\n", n);
}
