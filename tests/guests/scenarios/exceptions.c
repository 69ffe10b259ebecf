/* Installs an IDT and raises #DE, #UD, #GP and #PF on purpose, checking the
 * vector, the saved RIP (a fault points at the faulting instruction), the
 * error codes and CR2. For #PF the kernel builds its own 4-level page tables
 * with one page absent and one read-only. #BP (a trap, raised by INT3/INT n)
 * is in breakpoint.c: kvm_pvm hosts cannot run those instructions. */
#include "hvtest.h"

const char test_scenario[] = "exceptions";

/* The faulting instructions, each with a label so the saved RIP can be checked. */
void raise_de(void);
void raise_ud(void);
void raise_gp(void);
void touch_absent_read(void);
void touch_absent_write(void);
void touch_readonly_write(void);
extern const char de_insn[], ud_insn[], gp_insn[];
extern const char pf_read_insn[], pf_write_insn[], pf_ro_insn[];

__asm__(
    ".text\n"
    "raise_de: xorl %ecx, %ecx\n movl $1, %eax\n xorl %edx, %edx\n"
    "de_insn: divl %ecx\n ret\n"
    "raise_ud:\n ud_insn: ud2\n ret\n"
    "raise_gp: movabsq $0x8000000000000000, %rax\n"
    "gp_insn: movq (%rax), %rax\n ret\n"
    "touch_absent_read: movq $0x801008, %rax\n"
    "pf_read_insn: movq (%rax), %rax\n ret\n"
    "touch_absent_write: movq $0x801010, %rax\n"
    "pf_write_insn: movq $1, (%rax)\n ret\n"
    "touch_readonly_write: movq $0x802020, %rax\n"
    "pf_ro_insn: movq $1, (%rax)\n ret\n"
    ".globl raise_de, raise_ud, raise_gp, touch_absent_read, touch_absent_write, touch_readonly_write\n"
    ".globl de_insn, ud_insn, gp_insn, pf_read_insn, pf_write_insn, pf_ro_insn\n");

static void expect(const char* name, void (*fn)(void), uint64_t vector, const char* rip, bool has_error,
                   uint64_t error_code, struct caught_exception* got) {
  if (!probe(fn, got)) test_fail("%s: no exception was raised", name);
  if (got->vector != vector) test_fail("%s: vector %lu, expected %lu", name, got->vector, vector);
  if (got->rip != (uint64_t)(uintptr_t)rip)
    test_fail("%s: saved rip 0x%lx, expected 0x%lx", name, got->rip, (uint64_t)(uintptr_t)rip);
  if (has_error && got->error_code != error_code)
    test_fail("%s: error code 0x%lx, expected 0x%lx", name, got->error_code, error_code);
  print("%s: vector %lu at 0x%lx, error code 0x%lx ok\n", name, got->vector, got->rip, got->error_code);
}

/* Page tables: 0-1 GiB identity mapped with 2 MiB pages, except 8-10 MiB,
 * which uses 4 KiB pages where 0x801000 is absent and 0x802000 read-only. */
enum { PTE_P = 1, PTE_W = 2, PTE_PS = 0x80 };
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));

static void build_page_tables(void) {
  pml4[0] = (uint64_t)(uintptr_t)pdpt | PTE_P | PTE_W;
  pdpt[0] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_W;
  for (uint64_t i = 0; i < 512; i++) pd[i] = (i << 21) | PTE_P | PTE_W | PTE_PS;
  pd[4] = (uint64_t)(uintptr_t)pt | PTE_P | PTE_W; /* 8 MiB */
  for (uint64_t i = 0; i < 512; i++) pt[i] = (0x800000 + (i << 12)) | PTE_P | PTE_W;
  pt[1] = 0;                          /* 0x801000: absent */
  pt[2] = 0x802000 | PTE_P;           /* 0x802000: read-only */
  write_cr0(read_cr0() | (1u << 16)); /* CR0.WP: supervisor writes honour read-only pages */
  write_cr3((uint64_t)(uintptr_t)pml4);
}

void test_main(const struct boot_info* info) {
  print("exceptions: booted as %s\n", info->format_name);
  idt_install();
  struct caught_exception got;

  expect("#DE divide error", raise_de, 0, de_insn, false, 0, &got);
  expect("#UD invalid opcode", raise_ud, 6, ud_insn, false, 0, &got);
  expect("#GP non-canonical", raise_gp, 13, gp_insn, true, 0, &got);

  build_page_tables();
  expect("#PF absent read", touch_absent_read, 14, pf_read_insn, true, 0x0, &got);
  if (got.cr2 != 0x801008) test_fail("#PF absent read: cr2 0x%lx, expected 0x801008", got.cr2);
  expect("#PF absent write", touch_absent_write, 14, pf_write_insn, true, 0x2, &got);
  if (got.cr2 != 0x801010) test_fail("#PF absent write: cr2 0x%lx, expected 0x801010", got.cr2);
  expect("#PF read-only write", touch_readonly_write, 14, pf_ro_insn, true, 0x3, &got);
  if (got.cr2 != 0x802020) test_fail("#PF read-only write: cr2 0x%lx, expected 0x802020", got.cr2);

  /* Map the absent page and invalidate it: the same access must now succeed. */
  pt[1] = 0x801000 | PTE_P | PTE_W;
  __asm__ volatile("invlpg (%0)" : : "r"(0x801000ul) : "memory");
  if (probe(touch_absent_write, &got)) test_fail("write still faults (vector %lu) after mapping the page", got.vector);
  if (*(volatile uint64_t*)0x801010ul != 1) test_fail("write to the newly mapped page did not land");
  print("#PF resolved after mapping the page and invlpg\n");
  test_pass();
}
