// Reads the .modinfo section of a Linux kernel module (.ko, ELF64), to learn
// which modules it depends on, so the default guest's initramfs can load
// them in order without depmod.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::guest {

// The "depends=" list of the module (names as the kernel spells them, with
// '_' or '-' as in the file). Fails on a file that is not an ELF64 module.
Result<std::vector<std::string>> module_depends(const std::string& ko_bytes);

}  // namespace hostvisor::guest
