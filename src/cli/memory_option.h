// The --memory option: SIZE[,hugepages=on|thp|off][,lock=on][,prealloc=on]
// [,merge=on][,shared=on] (memory/memory_backing.h says what each does).
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "memory/memory_backing.h"

namespace hostvisor::cli {

struct MemoryOption {
  uint64_t size = 0;
  MemoryBackingOptions backing;
};

// Errors are one line starting "--memory TEXT: ". Options that cannot be
// combined are refused here too, before anything is built.
Result<MemoryOption> parse_memory_option(const std::string& text);

}  // namespace hostvisor::cli
