/* The smallest kernel: proves the loader entered it and the console and the
 * debug-exit port work. */
#include "hvtest.h"

const char test_scenario[] = "hello";

void test_main(const struct boot_info* info) {
  print("hello from %s\n", info->format_name);
  test_pass();
}
