// Which execution tier the software CPU uses, and how much code memory the
// translating tier may take. The command line (`hostvisor run --emu-tier
// interp|jit --emu-code-cache SIZE`) sets them for the process; without it
// the environment does, so the test suites and benchmarks can flip every
// vCPU of a run without plumbing:
//   HOSTVISOR_EMU_TIER=interp|jit       (default jit: it passes every test the
//                                       interpreter does; interp keeps the reference)
//   HOSTVISOR_EMU_CODE_CACHE=SIZE       (per vCPU, e.g. 32M; default 64 MiB)
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace hostvisor::emu::jit {

enum class Tier { kInterp, kJit };

struct TierOptions {
  static constexpr size_t kDefaultCodeCacheBytes = 64ull << 20;
  Tier tier = Tier::kJit;
  size_t code_cache_bytes = kDefaultCodeCacheBytes;
};

Result<Tier> parse_tier(const std::string& text);
// A size as parse_size() reads it, within the CodeCache's bounds.
Result<size_t> parse_code_cache_size(const std::string& text);
// From HOSTVISOR_EMU_TIER and HOSTVISOR_EMU_CODE_CACHE (unset: the defaults).
Result<TierOptions> tier_options_from_environment();

// What every vCPU created from now on uses: the command line's choice, given
// with `tier` and/or `code_cache` (empty: the environment's, or the default).
// Fails with a one-line message for an unknown tier or a size out of bounds.
Result<void> set_process_tier_options(const std::string& tier, const std::string& code_cache);
// The command line's options when set, else the environment's.
Result<TierOptions> tier_options();

}  // namespace hostvisor::emu::jit
