#include "hv/cpu_state.h"

namespace hostvisor {

SystemRegisters reset_system_registers() {
  SystemRegisters s;
  Segment data;
  data.type = 0x3;  // read/write, accessed
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.cs = data;
  s.cs.type = 0xb;  // execute/read, accessed
  s.cs.selector = 0xf000;
  s.cs.base = 0xffff0000;
  s.tr.s = false;
  s.tr.type = 0xb;  // busy 32-bit TSS
  s.ldt.s = false;
  s.ldt.type = 0x2;
  return s;
}

}  // namespace hostvisor
