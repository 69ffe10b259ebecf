// --fw-cfg name=opt/NAME,file=PATH | name=opt/NAME,string=TEXT: a file the
// user hands the guest's firmware (or the guest, through Linux's
// qemu_fw_cfg driver) as a fw_cfg file, with QEMU's -fw_cfg syntax.
#pragma once

#include <string>

#include "base/result.h"
#include "vmm/machine_config.h"

namespace hostvisor::cli {

// Names must start with "opt/" (the part of the fw_cfg namespace QEMU
// leaves to users: the machine's own files cannot be replaced) and fit
// fw_cfg's 55 characters. TEXT cannot contain a comma.
Result<FwCfgFileConfig> parse_fw_cfg_option(const std::string& text);

}  // namespace hostvisor::cli
