#include "hv/emu/platform/platform_clock.h"

#include <time.h>

namespace hostvisor::emu {

namespace {
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNsPerSecond + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

HostClock::HostClock() : origin_ns_(monotonic_ns()) {}

uint64_t HostClock::now_ns() const { return monotonic_ns() - origin_ns_.load(std::memory_order_acquire); }

void HostClock::set_now_ns(uint64_t ns) { origin_ns_.store(monotonic_ns() - ns, std::memory_order_release); }

}  // namespace hostvisor::emu
