#include "hv/emu/jit/tier_options.h"

#include <cstdlib>
#include <mutex>
#include <optional>

#include "base/size.h"
#include "hv/emu/jit/code_cache.h"

namespace hostvisor::emu::jit {

Result<Tier> parse_tier(const std::string& text) {
  if (text == "interp") return Tier::kInterp;
  if (text == "jit") return Tier::kJit;
  return Error(ErrorCode::kInvalidArgument, "unknown emu tier '" + text + "' (interp or jit)");
}

Result<size_t> parse_code_cache_size(const std::string& text) {
  auto bytes = parse_size(text);
  if (!bytes) return bytes.error().with_context("code cache size");
  if (*bytes < CodeCache::kMinBytes || *bytes > CodeCache::kMaxBytes) {
    return Error(ErrorCode::kInvalidArgument, "code cache size '" + text + "' is outside 64K..1G");
  }
  return static_cast<size_t>(*bytes);
}

Result<TierOptions> tier_options_from_environment() {
  TierOptions options;
  if (const char* tier = std::getenv("HOSTVISOR_EMU_TIER")) {
    auto t = parse_tier(tier);
    if (!t) return t.error().with_context("HOSTVISOR_EMU_TIER");
    options.tier = *t;
  }
  if (const char* size = std::getenv("HOSTVISOR_EMU_CODE_CACHE")) {
    auto s = parse_code_cache_size(size);
    if (!s) return s.error().with_context("HOSTVISOR_EMU_CODE_CACHE");
    options.code_cache_bytes = *s;
  }
  return options;
}

namespace {
std::mutex process_options_mutex;
std::optional<TierOptions> process_options;
}  // namespace

Result<void> set_process_tier_options(const std::string& tier, const std::string& code_cache) {
  TierOptions options = HV_TRY(tier_options_from_environment());
  if (!tier.empty()) {
    auto t = parse_tier(tier);
    if (!t) return t.error().with_context("--emu-tier");
    options.tier = *t;
  }
  if (!code_cache.empty()) {
    auto size = parse_code_cache_size(code_cache);
    if (!size) return size.error().with_context("--emu-code-cache");
    options.code_cache_bytes = *size;
  }
  std::lock_guard lock(process_options_mutex);
  process_options = options;
  return {};
}

Result<TierOptions> tier_options() {
  {
    std::lock_guard lock(process_options_mutex);
    if (process_options) return *process_options;
  }
  return tier_options_from_environment();
}

}  // namespace hostvisor::emu::jit
