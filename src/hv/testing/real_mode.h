// Test support: puts a vCPU in real mode with CS = 0, so IP is the physical
// address of the code, for tests that run a few raw instructions on either
// backend.
#pragma once

#include <cstdint>

#include "hv/hypervisor.h"

namespace hostvisor::testing {

inline Result<void> enter_real_mode(Vcpu& vcpu, uint64_t ip, uint64_t sp = 0x7000) {
  SystemRegisters sregs = reset_system_registers();
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  HV_TRY(vcpu.set_system_registers(sregs));
  Registers regs;  // RFLAGS 0x2: interrupts off
  regs.rip = ip;
  regs.rsp = sp;
  return vcpu.set_registers(regs);
}

}  // namespace hostvisor::testing
