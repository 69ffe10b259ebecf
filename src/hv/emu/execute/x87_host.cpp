#include "hv/emu/execute/x87_host.h"

#include <cstring>

#include "hv/emu/flags.h"

// A table of 2048 four-byte stubs, one per (opcode 0xD8-0xDF, ModRM) pair:
// the two instruction bytes and RET. Only register forms and the mod=00,
// rm=111 ([RDI]) memory forms are ever called; the other entries exist only
// to keep the table indexable.
//
// hv_emu_x87_host_run(image, stub, memory, &rflags) saves the host FPU with
// FNSAVE (which also reinitialises it), loads the guest image with FRSTOR,
// sets the arithmetic flags, calls the stub with RDI = memory, captures the
// flags, saves the result with FNSAVE (non-waiting: a pending unmasked
// exception stays in the image) and restores the host FPU.
asm(R"(
.text
.p2align 4
.local hv_emu_x87_stubs
hv_emu_x87_stubs:
.set hv_emu_x87_i, 0
.rept 2048
.byte 0xd8 + (hv_emu_x87_i >> 8), hv_emu_x87_i & 0xff, 0xc3, 0xcc
.set hv_emu_x87_i, hv_emu_x87_i + 1
.endr

.p2align 4
.globl hv_emu_x87_host_run
.hidden hv_emu_x87_host_run
.type hv_emu_x87_host_run, @function
hv_emu_x87_host_run:
  push %rbx
  push %r12
  sub $120, %rsp
  fnsave (%rsp)
  mov %rdi, %rbx
  mov %rcx, %r12
  frstor (%rbx)
  pushq (%r12)
  popfq
  mov %rdx, %rdi
  call *%rsi
  pushfq
  popq (%r12)
  fnsave (%rbx)
  frstor (%rsp)
  add $120, %rsp
  pop %r12
  pop %rbx
  ret
.size hv_emu_x87_host_run, .-hv_emu_x87_host_run
)");

extern "C" void hv_emu_x87_host_run(void* image, const void* stub, void* memory, uint64_t* rflags);

namespace hostvisor::emu {
namespace {

const uint8_t* stubs() {
  const uint8_t* base;
  asm("lea hv_emu_x87_stubs(%%rip), %0" : "=r"(base));
  return base;
}

}  // namespace

void x87_host_execute(FsaveImage& image, uint8_t opcode, uint8_t modrm, void* memory, uint64_t& rflags) {
  const unsigned index = ((opcode & 7u) << 8) | modrm;
  // Only the arithmetic flags reach the host (never TF, DF or AC).
  uint64_t host_flags = 0x202 | (rflags & kArithFlags);
  hv_emu_x87_host_run(image.b, stubs() + 4 * index, memory, &host_flags);
  rflags = (rflags & ~kArithFlags) | (host_flags & kArithFlags);
}

uint32_t mxcsr_writable_bits() {
  static const uint32_t bits = [] {
    alignas(16) uint8_t area[512] = {};
    asm volatile("fxsave %0" : "=m"(area));
    uint32_t mask;
    std::memcpy(&mask, area + 28, 4);
    return mask ? mask : 0xffbfu;  // zero means the original 0xFFBF (no DAZ)
  }();
  return bits;
}

}  // namespace hostvisor::emu
