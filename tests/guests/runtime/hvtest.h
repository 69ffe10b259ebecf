/* The freestanding runtime every test kernel links: port I/O, the COM1
 * console, a small printf, pass/fail through the debug-exit port, and the
 * boot information of whichever protocol started the kernel, in one neutral
 * form. */
#ifndef HOSTVISOR_TESTS_GUESTS_HVTEST_H
#define HOSTVISOR_TESTS_GUESTS_HVTEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_contract.h"

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

/* ---- console (COM1) ---- */
#define COM1 0x3f8
void serial_putc(char c);
void print(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void vprint(const char* fmt, va_list args);

/* ---- results ---- */
/* Each scenario defines its name; it prefixes the PASS/FAIL lines. */
extern const char test_scenario[];
__attribute__((noreturn)) void test_pass(void);
__attribute__((noreturn, format(printf, 1, 2))) void test_fail(const char* fmt, ...);
/* Stops the CPU for good (used after a debug-exit write that did not end the VM). */
__attribute__((noreturn)) void halt_forever(void);

/* ---- memory and strings (the compiler may also call these) ---- */
void* memset(void* dst, int c, size_t n);
void* memcpy(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);
const char* strstr(const char* haystack, const char* needle);

/* ---- boot information ---- */
enum boot_format { BOOT_BZIMAGE = 1, BOOT_PVH = 2, BOOT_MULTIBOOT = 3, BOOT_ELF64 = 4 };

enum { MEM_USABLE = 1 }; /* e820 / multiboot / PVH share this type number for RAM */

struct mem_range {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

#define BOOT_INFO_MAX_RANGES 64
struct boot_info {
  enum boot_format format;
  const char* format_name;
  uint64_t raw_pointer; /* what the entry register held (RSI/EBX), 0 if none */
  /* NULL when the protocol's structure was missing or malformed; error says why. */
  const char* error;
  const char* cmdline; /* NULL when none was given */
  bool has_initrd;
  uint64_t initrd_addr;
  uint64_t initrd_size;
  uint32_t range_count;
  bool ranges_truncated;
  struct mem_range ranges[BOOT_INFO_MAX_RANGES];
  /* multiboot only: mem_lower / mem_upper in KiB, when flag bit 0 is set */
  bool has_mem_lower_upper;
  uint32_t mem_lower_kib;
  uint32_t mem_upper_kib;
};

/* The CPU state the loader handed over, captured by the entry stub before it
 * changed anything (offsets in boot/boot.h). Selectors are zero-extended. */
struct entry_state {
  uint64_t cs, ds, es, ss;
  uint64_t rflags, cr0, cr3, cr4, efer;
};
extern struct entry_state boot_entry_state;

/* Provided by each scenario; called once the CPU is in 64-bit mode on the
 * runtime's own GDT and stack. Must end with test_pass() or test_fail(). */
void test_main(const struct boot_info* info);

/* ---- descriptor tables and exceptions (runtime/idt.c, runtime/isr.S) ---- */
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10

struct exception_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector, error_code; /* error_code is 0 for vectors without one */
  uint64_t rip, cs, rflags, rsp, ss;
};

/* Installs an IDT whose vectors 0-31 go to exception_dispatch() and whose
 * vectors 32-63 go to interrupt_dispatch(). */
#define IDT_VECTORS 64
void idt_install(void);
/* Loads the IDT idt_install() built on the calling CPU (an AP's first step). */
void idt_use(void);
/* Loads an IDT register with the given limit and base (for the triple-fault test). */
void idt_load(uint16_t limit, uint64_t base);

/* What the last caught exception was. */
struct caught_exception {
  bool caught;
  uint64_t vector, error_code, rip, cr2;
};

/* Calls fn(); if it raises an exception, the handler records it in *out and
 * execution resumes here. Returns true if an exception was caught. An
 * exception outside probe() fails the test. */
bool probe(void (*fn)(void), struct caught_exception* out);

/* ---- external interrupts (runtime/interrupts.c, runtime/lapic.c) ----
 * Vectors 32-63 come from the local APIC (MSI/MSI-X messages, its timer). A
 * scenario registers each vector it expects; any other one fails the test. */
#define IRQ_FIRST_VECTOR 32
#define IRQ_LAST_VECTOR (IDT_VECTORS - 1)
typedef void (*irq_handler)(uint8_t vector);
/* Accepts `vector` from now on; handler (may be NULL) runs on each one,
 * with interrupts off, before the EOI. */
void irq_register(uint8_t vector, irq_handler handler);
/* How many times `vector` arrived since boot. */
uint32_t irq_count(uint8_t vector);
/* Called by the IDT stubs: runs the handler, counts, sends the EOI. */
void interrupt_dispatch(uint8_t vector);

/* Waits, with `sti; hlt`, until done(arg) returns true, and returns true; or
 * returns false once about ten seconds have passed (by the TSC, so the bound
 * holds on any backend). A local APIC timer wakes the CPU every few
 * milliseconds so a lost interrupt ends in a diagnosis, not a hang. done() is
 * called with interrupts off; interrupts are off again on return. Needs
 * idt_install() and lapic_enable(). (Never `cli; hlt`: some KVM hosts never
 * wake a CPU halted with interrupts off.) */
bool wait_until(bool (*done)(const void* arg), const void* arg);
/* The same with a deadline of `tsc_ticks` TSC ticks (2e9 are about a second). */
bool wait_until_ticks(bool (*done)(const void* arg), const void* arg, uint64_t tsc_ticks);

static inline void interrupts_on(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void interrupts_off(void) { __asm__ volatile("cli" ::: "memory"); }
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}
/* A full barrier (store-load ordering), for the virtqueue event-index checks. */
static inline void memory_fence(void) { __asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc"); }
static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

/* ---- local APIC (xAPIC, memory-mapped at 0xFEE00000) ---- */
#define LAPIC_BASE 0xfee00000ul
/* Software-enables the local APIC (SVR bit 8) with `spurious_vector`, which
 * is registered so a spurious interrupt is harmless, and accepts every
 * priority (TPR 0). Masks the 8259 PICs and LINT0, so nothing else
 * interrupts. */
void lapic_enable(uint8_t spurious_vector);
uint32_t lapic_id(void);
void lapic_eoi(void);
uint8_t lapic_spurious_vector(void); /* 0 before lapic_enable() */
/* Periodic timer at the APIC timer rate (divide by 1), or stopped. */
void lapic_timer_periodic(uint8_t vector, uint32_t initial_count);
void lapic_timer_stop(void);

/* ---- application processors (runtime/ap_start.c with boot/smp_trampoline.S,
 * linked only into the kernels that use them) ---- */
/* Starts every other CPU (INIT, STARTUP, and a second STARTUP unless
 * *arrived became non-zero) at `entry`, in 64-bit mode on this CPU's page
 * tables, with interrupts off and `stack_top` as stack (one stack: start one
 * AP). entry() must not return. Returns without waiting for the AP. */
void ap_start(void (*entry)(void), void* stack_top, const volatile uint32_t* arrived);

static inline uint64_t read_cr0(void) {
  uint64_t v;
  __asm__ volatile("mov %%cr0, %0" : "=r"(v));
  return v;
}
static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline uint64_t read_cr2(void) {
  uint64_t v;
  __asm__ volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
static inline uint64_t read_cr3(void) {
  uint64_t v;
  __asm__ volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }

#endif
