// The placeholder default guest embedded in the hostvisor binary.
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::guest {

// Writes the embedded demo kernel into `cache_dir` (if not already there with
// the same content) and returns its path.
Result<std::string> install_demo_kernel(const std::string& cache_dir);

}  // namespace hostvisor::guest
