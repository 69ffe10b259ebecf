// A token bucket (as Firecracker's rate limiter): `rate` bytes per second
// flow into a bucket that holds at most `capacity` bytes; a packet goes when
// the bucket holds enough for it. A packet bigger than the bucket goes when
// the bucket is full and leaves it in debt, so the average rate holds for
// every packet size. Time is passed in (nanoseconds on CLOCK_MONOTONIC), so
// the caller decides the clock and tests decide time. Not thread-safe: one
// NIC's queue owns one bucket.
#pragma once

#include <cstdint>

namespace hostvisor::net {

class TokenBucket {
 public:
  // `capacity` 0 picks a tenth of a second of traffic, at least 64 KiB (one
  // segmentation super-packet), so bursts stay short but a full-size packet
  // never waits for more than the bucket can hold.
  TokenBucket(uint64_t rate_bytes_per_second, uint64_t capacity_bytes, uint64_t now_ns);

  // Takes `bytes` tokens if there are enough; false (nothing taken) if not.
  bool try_consume(uint64_t bytes, uint64_t now_ns);
  // How long until try_consume(bytes) would succeed: 0 if it would now. For
  // a timer that wakes the sender.
  uint64_t ns_until_available(uint64_t bytes, uint64_t now_ns);

  uint64_t rate() const { return rate_; }
  uint64_t capacity() const { return capacity_; }

 private:
  // Tokens in units of 1e-9 byte, so that every nanosecond adds exactly
  // `rate_` units and no rounding drifts the rate. Negative while in debt.
  using Credit = __int128;
  static constexpr Credit kUnitsPerByte = 1'000'000'000;

  void refill(uint64_t now_ns);
  Credit needed(uint64_t bytes) const;

  uint64_t rate_;
  uint64_t capacity_;
  Credit credit_;
  uint64_t last_ns_;
};

}  // namespace hostvisor::net
