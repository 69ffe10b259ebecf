// A C toolchain for test guests, from the host's Debian packages: tcc (one
// small program that compiles, assembles and links) and GNU make, added to
// an InitramfsAppendix so the default guest can build a C project without a
// compiler of its own.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "tests/linux/initramfs_appendix.h"

namespace hostvisor::testing {

inline constexpr const char* kTccPath = "/usr/bin/tcc";
inline constexpr const char* kMakePath = "/usr/bin/make";

// Adds tcc and make with their libraries, tcc's own headers and runtime
// library, glibc's start files, link script and libraries, and the system
// headers `sources` (C files on the host) include, found by preprocessing
// them with the host's tcc: the guest's tcc then reads the same files.
Result<void> add_tcc_toolchain(InitramfsAppendix& appendix, const std::vector<std::string>& sources);

}  // namespace hostvisor::testing
