// Read-modify-write of an instruction's destination operand. With a LOCK
// prefix on RAM the update is a host compare-and-swap, so locked guest
// instructions stay atomic across vCPU threads.
#pragma once

#include <cstring>

#include "hv/emu/execute/operands.h"

namespace hostvisor::emu {

template <typename T, typename F>
inline bool atomic_update(uint8_t* p, F& f, uint64_t& old_out) {
  T* ptr = reinterpret_cast<T*>(p);
  T old = __atomic_load_n(ptr, __ATOMIC_ACQUIRE);
  for (;;) {
    T desired = static_cast<T>(f(static_cast<uint64_t>(old)));
    if (__atomic_compare_exchange_n(ptr, &old, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) break;
  }
  old_out = old;
  return true;
}

// Applies `f(old) -> new` to `size` bytes at segment offset `offset`; locked
// as a host atomic when the instruction has a LOCK prefix and the target is RAM.
template <typename F>
inline uint64_t rmw_memory(Cpu& cpu, const Insn& insn, uint8_t seg, uint64_t offset, unsigned size, F&& f) {
  const uint64_t lin = linear_address(cpu, seg, offset, size, true);
  const bool user = user_mode(cpu);
  if (insn.prefixes & kPrefixLock) {
    if (uint8_t* p = writable_host_pointer(cpu, lin, size, user)) {
      uint64_t old = 0;
      switch (size) {
        case 1: atomic_update<uint8_t>(p, f, old); break;
        case 2: atomic_update<uint16_t>(p, f, old); break;
        case 4: atomic_update<uint32_t>(p, f, old); break;
        default: atomic_update<uint64_t>(p, f, old); break;
      }
      return old;
    }
  }
  uint64_t old = read_linear_n(cpu, lin, size, user);
  write_linear_n(cpu, lin, size, f(old), user);
  return old;
}

// Applies `f(old) -> new` to operand 0 and returns the old value.
template <typename F>
inline uint64_t rmw(Cpu& cpu, const Insn& insn, F&& f) {
  const Operand& o = insn.op[0];
  if (o.kind == OpKind::kReg) {
    uint64_t old = get_reg(cpu, o.reg, o.size, o.high8);
    set_reg(cpu, o.reg, o.size, f(old), o.high8);
    return old;
  }
  return rmw_memory(cpu, insn, insn.mem.seg, effective_address(cpu, insn), o.size, f);
}

}  // namespace hostvisor::emu
