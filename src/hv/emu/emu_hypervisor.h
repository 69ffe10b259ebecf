// The software x86-64 CPU backend (--accel emu).
#pragma once

#include <memory>

#include "base/result.h"
#include "hv/hypervisor.h"

namespace hostvisor::emu {

Result<std::unique_ptr<Hypervisor>> create_emu_hypervisor();

}  // namespace hostvisor::emu
