/* Loads an empty IDT and executes ud2: #UD cannot be delivered (#GP), neither
 * can #GP (#DF), nor #DF: a triple fault, which the VMM must report as a
 * shutdown and end with a non-zero status. */
#include "hvtest.h"

const char test_scenario[] = "triplefault";

void test_main(const struct boot_info* info) {
  print("triplefault: booted as %s\n", info->format_name);
  print("triplefault: loading a null IDT and executing ud2\n");
  idt_load(0, 0);
  __asm__ volatile("ud2");
  test_fail("still running after a triple fault");
}
