// Time for the emulated platform: the advertised TSC and APIC-timer rates
// (constants the CPU core reports in CPUID), and the clock every timer of the
// platform reads. The clock is injectable so tests drive time exactly.
#pragma once

#include <atomic>
#include <cstdint>

namespace hostvisor::emu {

constexpr uint64_t kNsPerSecond = 1'000'000'000;

// The core crystal clock. The CPU core reports it in CPUID leaf 0x15 ECX, and
// the local APIC timer counts at this rate before its divide configuration
// (Linux takes the APIC timer rate from leaf 0x15 when it is present).
constexpr uint64_t kCrystalHz = 25'000'000;
// TSC = crystal * kTscCrystalRatioNumerator / kTscCrystalRatioDenominator:
// CPUID leaf 0x15 EBX and EAX respectively.
constexpr uint32_t kTscCrystalRatioNumerator = 80;
constexpr uint32_t kTscCrystalRatioDenominator = 1;
// The fixed, advertised TSC frequency (RDTSC rate; CPUID leaf 0x16 reports
// kTscFrequencyHz / 1'000'000 MHz as base frequency).
constexpr uint64_t kTscFrequencyHz = kCrystalHz * kTscCrystalRatioNumerator / kTscCrystalRatioDenominator;
static_assert(kTscFrequencyHz == 2'000'000'000);
// Both rates divide a second exactly, so conversions are exact integers.
static_assert(kNsPerSecond % kCrystalHz == 0);
constexpr uint64_t kNsPerCrystalTick = kNsPerSecond / kCrystalHz;    // 40 ns
constexpr uint64_t kTscTicksPerNs = kTscFrequencyHz / kNsPerSecond;  // 2
static_assert(kTscFrequencyHz % kNsPerSecond == 0);

// The shortest interval at which a periodic timer (LAPIC periodic mode, PIT
// modes 2 and 3) interrupts: shorter periods still count at the programmed
// rate, but interrupts are coalesced to one per interval, so a guest cannot
// make the timer thread spin. KVM applies the same limit (min_timer_period_us
// = 200), so guests see the same on both backends.
constexpr uint64_t kMinPeriodicTimerNs = 200'000;

// The 8254 PIT input clock.
constexpr uint64_t kPitFrequencyHz = 1'193'182;

// Host TSC value (before the guest's IA32_TSC offset) at clock time `ns`.
constexpr uint64_t tsc_at_ns(uint64_t ns) { return ns * kTscTicksPerNs; }
// Clock time at which the un-offset TSC reaches `tsc` (rounded up).
constexpr uint64_t ns_at_tsc(uint64_t tsc) { return tsc / kTscTicksPerNs + (tsc % kTscTicksPerNs != 0); }

// Monotonic nanoseconds. Every platform timer (PIT, LAPIC timers, the TSC the
// core derives) reads one shared Clock so they agree with each other.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t now_ns() const = 0;
  // Makes now_ns() read `ns` from here on. A snapshot restore sets the clock
  // to the time the snapshot was taken at, so the guest's time continues
  // without a jump.
  virtual void set_now_ns(uint64_t ns) = 0;
};

// CLOCK_MONOTONIC of the host, relative to when the clock was created (so the
// guest's TSC starts near zero).
class HostClock final : public Clock {
 public:
  HostClock();
  uint64_t now_ns() const override;
  void set_now_ns(uint64_t ns) override;

 private:
  // now_ns() = CLOCK_MONOTONIC - origin, modulo 2^64 (a restored clock may
  // be ahead of the host's).
  std::atomic<uint64_t> origin_ns_;
};

// A clock that moves only when told to: for tests and deterministic replay.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ns = 0) : now_(start_ns) {}
  uint64_t now_ns() const override { return now_.load(std::memory_order_acquire); }
  void set(uint64_t ns) { now_.store(ns, std::memory_order_release); }
  void set_now_ns(uint64_t ns) override { set(ns); }
  void advance(uint64_t ns) { now_.fetch_add(ns, std::memory_order_acq_rel); }

 private:
  std::atomic<uint64_t> now_;
};

}  // namespace hostvisor::emu
