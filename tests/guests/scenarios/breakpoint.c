/* #BP from both encodings of the breakpoint instruction: INT3 (0xCC) and
 * INT 3 (0xCD 0x03). #BP is a trap, so the saved RIP is the instruction after
 * it. Kept apart from exceptions.c because kvm_pvm's in-kernel emulator
 * cannot execute INT3/INT n ("instruction emulation failed"). */
#include "hvtest.h"

const char test_scenario[] = "breakpoint";

void raise_int3(void);
void raise_int_3(void);
extern const char int3_after[], int_3_after[];

/* The assembler would encode "int $3" as INT3, hence the bytes. */
__asm__(
    ".text\n"
    "raise_int3: int3\n int3_after: ret\n"
    "raise_int_3: .byte 0xcd, 0x03\n int_3_after: ret\n"
    ".globl raise_int3, raise_int_3, int3_after, int_3_after\n");

static void expect_breakpoint(const char* name, void (*fn)(void), const char* after) {
  struct caught_exception got;
  if (!probe(fn, &got)) test_fail("%s: no exception was raised", name);
  if (got.vector != 3) test_fail("%s: vector %lu, expected 3 (#BP)", name, got.vector);
  if (got.rip != (uint64_t)(uintptr_t)after)
    test_fail("%s: saved rip 0x%lx, expected 0x%lx (the next instruction)", name, got.rip, (uint64_t)(uintptr_t)after);
  print("%s: #BP with rip 0x%lx ok\n", name, got.rip);
}

void test_main(const struct boot_info* info) {
  print("breakpoint: booted as %s\n", info->format_name);
  idt_install();
  expect_breakpoint("int3", raise_int3, int3_after);
  expect_breakpoint("int $3", raise_int_3, int_3_after);
  test_pass();
}
