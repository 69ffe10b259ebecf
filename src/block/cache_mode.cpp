#include "block/cache_mode.h"

namespace hostvisor::block {

const char* cache_mode_name(CacheMode mode) {
  switch (mode) {
    case CacheMode::kWriteback: return "writeback";
    case CacheMode::kNone: return "none";
    case CacheMode::kUnsafe: return "unsafe";
  }
  return "?";
}

Result<CacheMode> parse_cache_mode(const std::string& text) {
  if (text == "writeback") return CacheMode::kWriteback;
  if (text == "none") return CacheMode::kNone;
  if (text == "unsafe") return CacheMode::kUnsafe;
  return Error(ErrorCode::kInvalidArgument, "unknown cache mode '" + text + "' (use writeback, none or unsafe)");
}

}  // namespace hostvisor::block
