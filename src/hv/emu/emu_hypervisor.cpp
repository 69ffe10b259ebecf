#include "hv/emu/emu_hypervisor.h"

namespace hostvisor::emu {

Result<std::unique_ptr<Hypervisor>> create_emu_hypervisor() {
  return Error(ErrorCode::kUnsupported,
               "the software CPU (--accel emu) is not built yet; use --accel kvm on a host with hardware "
               "virtualization");
}

}  // namespace hostvisor::emu
