/* The IDT (exceptions 0-31, external interrupts 32-63) and the exception
 * dispatcher behind probe(). */
#include "hvtest.h"

struct idt_gate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));

extern const uint64_t isr_stubs[IDT_VECTORS];
extern uint64_t probe_saved_rsp;
void probe_resume(void);
bool probe_call(void (*fn)(void));

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));
static volatile bool probe_active;
static struct caught_exception last_caught;

void idt_load(uint16_t limit, uint64_t base) {
  struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) descriptor = {limit, base};
  __asm__ volatile("lidt %0" : : "m"(descriptor) : "memory");
}

void idt_install(void) {
  for (int v = 0; v < IDT_VECTORS; v++) {
    uint64_t handler = isr_stubs[v];
    idt[v] = (struct idt_gate){
        .offset_low = (uint16_t)handler,
        .selector = KERNEL_CS,
        .ist = 0,
        .type_attr = 0x8e, /* present, DPL 0, 64-bit interrupt gate */
        .offset_mid = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
        .reserved = 0,
    };
  }
  idt_use();
}

void idt_use(void) { idt_load(sizeof(idt) - 1, (uint64_t)(uintptr_t)idt); }

void exception_dispatch(struct exception_frame* frame);
void exception_dispatch(struct exception_frame* frame) {
  if (frame->vector >= IRQ_FIRST_VECTOR) {
    interrupt_dispatch((uint8_t)frame->vector);
    return;
  }
  if (!probe_active) {
    test_fail("unexpected exception %lu (error code 0x%lx) at rip 0x%lx, cr2 0x%lx", frame->vector, frame->error_code,
              frame->rip, read_cr2());
  }
  probe_active = false;
  last_caught = (struct caught_exception){
      .caught = true,
      .vector = frame->vector,
      .error_code = frame->error_code,
      .rip = frame->rip,
      .cr2 = read_cr2(),
  };
  frame->rip = (uint64_t)(uintptr_t)probe_resume;
  frame->rsp = probe_saved_rsp;
}

bool probe(void (*fn)(void), struct caught_exception* out) {
  last_caught = (struct caught_exception){0};
  probe_active = true;
  bool faulted = probe_call(fn);
  probe_active = false;
  *out = last_caught;
  return faulted;
}
