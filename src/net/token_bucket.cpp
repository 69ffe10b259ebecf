#include "net/token_bucket.h"

#include <algorithm>

namespace hostvisor::net {

namespace {
constexpr uint64_t kMinimumCapacity = 64 * 1024;
}

TokenBucket::TokenBucket(uint64_t rate_bytes_per_second, uint64_t capacity_bytes, uint64_t now_ns)
    : rate_(std::max<uint64_t>(rate_bytes_per_second, 1)),
      capacity_(capacity_bytes ? capacity_bytes : std::max(rate_ / 10, kMinimumCapacity)),
      credit_(Credit{capacity_} * kUnitsPerByte),
      last_ns_(now_ns) {}

void TokenBucket::refill(uint64_t now_ns) {
  if (now_ns <= last_ns_) return;  // a clock that did not move (or a caller's stale time)
  credit_ += Credit{now_ns - last_ns_} * rate_;
  credit_ = std::min(credit_, Credit{capacity_} * kUnitsPerByte);
  last_ns_ = now_ns;
}

TokenBucket::Credit TokenBucket::needed(uint64_t bytes) const {
  // A packet bigger than the bucket needs only a full bucket (and then owes the rest).
  return Credit{std::min(bytes, capacity_)} * kUnitsPerByte;
}

bool TokenBucket::try_consume(uint64_t bytes, uint64_t now_ns) {
  refill(now_ns);
  if (credit_ < needed(bytes)) return false;
  credit_ -= Credit{bytes} * kUnitsPerByte;
  return true;
}

uint64_t TokenBucket::ns_until_available(uint64_t bytes, uint64_t now_ns) {
  refill(now_ns);
  const Credit missing = needed(bytes) - credit_;
  if (missing <= 0) return 0;
  return static_cast<uint64_t>((missing + rate_ - 1) / rate_);
}

}  // namespace hostvisor::net
