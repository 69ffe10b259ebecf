#include "hv/emu/platform/pit.h"

#include <algorithm>
#include <mutex>
#include <optional>

namespace hostvisor::emu {

namespace {

// Input clocks in [0, ns) at the PIT rate.
uint64_t ticks_in(uint64_t ns) {
  return static_cast<uint64_t>(static_cast<unsigned __int128>(ns) * kPitFrequencyHz / kNsPerSecond);
}
// The shortest time in which `ticks` input clocks have elapsed.
uint64_t ns_for_ticks(uint64_t ticks) {
  const unsigned __int128 ns =
      (static_cast<unsigned __int128>(ticks) * kNsPerSecond + kPitFrequencyHz - 1) / kPitFrequencyHz;
  return ns > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(ns);
}

uint16_t to_bcd(uint32_t v) {
  v %= 10000;
  return static_cast<uint16_t>((v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) | ((v / 1000) << 12));
}
uint32_t from_bcd(uint16_t v) {
  return (v & 0xf) + ((v >> 4) & 0xf) * 10 + ((v >> 8) & 0xf) * 100 + ((v >> 12) & 0xf) * 1000;
}

}  // namespace

class Pit::Impl {
 public:
  explicit Impl(PlatformTimers& timers) : timers_(timers) {
    timer_id_ = timers_.add([this](uint64_t now) { on_timer(now); });
    reset_locked();
  }
  ~Impl() { timers_.disarm(timer_id_); }

  uint64_t now() const { return timers_.clock().now_ns(); }

  void reset_locked() {
    for (unsigned i = 0; i < 3; ++i) {
      s_.channels[i] = Channel{};
      load_ns_[i] = now();
    }
    s_.channels[2].gate = false;  // port 0x61 bit 0 is clear at reset
    schedule_locked();
  }

  // Whether channel ch is counting input clocks right now.
  bool ticking(const Channel& c) const {
    if (!c.counting) return false;
    if (c.mode == 1 || c.mode == 5) return !c.armed;  // after a trigger the gate does not matter
    return c.gate;
  }

  uint64_t ticks(unsigned ch, uint64_t t) const {
    const Channel& c = s_.channels[ch];
    if (!ticking(c)) return c.elapsed_ticks;
    return c.elapsed_ticks + ticks_in(t > load_ns_[ch] ? t - load_ns_[ch] : 0);
  }

  // Folds the running count into elapsed_ticks and restarts the reference
  // time, before anything changes whether or how the channel ticks.
  void checkpoint(unsigned ch, uint64_t t) {
    s_.channels[ch].elapsed_ticks = ticks(ch, t);
    load_ns_[ch] = t;
  }

  void restart(unsigned ch, uint64_t t) {
    s_.channels[ch].elapsed_ticks = 0;
    load_ns_[ch] = t;
  }

  uint32_t modulus(const Channel& c) const { return c.bcd ? 10000 : 0x10000; }

  // The counting element's value.
  uint32_t value(unsigned ch, uint64_t t) const {
    const Channel& c = s_.channels[ch];
    const uint64_t n = c.count;
    if (!c.counting) return static_cast<uint32_t>(n % modulus(c));
    const uint64_t k = ticks(ch, t);
    switch (c.mode) {
      case 2: return static_cast<uint32_t>(n - k % n);
      case 3: {
        const uint64_t p = k % n;
        const uint64_t first_half = (n + 1) / 2;
        const uint64_t into = p < first_half ? p : p - first_half;
        return static_cast<uint32_t>((n & ~uint64_t{1}) - 2 * into) % modulus(c);
      }
      default: {  // 0, 1, 4, 5: count down once, then wrap around and keep going
        const uint64_t m = modulus(c);
        return static_cast<uint32_t>((n % m + m - k % m) % m);
      }
    }
  }

  bool output(unsigned ch, uint64_t t) const {
    const Channel& c = s_.channels[ch];
    if (!c.counting) return c.mode != 0;
    const uint64_t n = c.count;
    const uint64_t k = ticks(ch, t);
    switch (c.mode) {
      case 0: return k >= n;
      case 1: return c.armed || k >= n;
      case 2:
        if (!c.gate) return true;
        return k % n != n - 1 || n == 1;
      case 3:
        if (!c.gate) return true;
        return k % n < (n + 1) / 2;
      case 4:
      case 5:
        if (c.mode == 5 && c.armed) return true;
        return k != n;
      default: return true;
    }
  }

  // The tick count (of channel 0's elapsed_ticks scale) of the next rising
  // edge of the output after tick k, if any.
  std::optional<uint64_t> next_rising_edge(const Channel& c, uint64_t k) const {
    if (!ticking(c)) return std::nullopt;
    const uint64_t n = c.count;
    switch (c.mode) {
      case 0:
      case 1:
        if (k < n) return n;
        return std::nullopt;
      case 2:
      case 3: return (k / n + 1) * n;
      case 4:
      case 5:
        if (k < n + 1) return n + 1;
        return std::nullopt;
      default: return std::nullopt;
    }
  }

  // Arms the timer service for channel 0's next rising edge.
  void schedule_locked() {
    const uint64_t t = now();
    const Channel& c = s_.channels[0];
    const uint64_t k = ticks(0, t);
    const auto edge = next_rising_edge(c, k);
    if (!edge) {
      next_edge_tick_.reset();
      timers_.disarm(timer_id_);
      return;
    }
    next_edge_tick_ = *edge;
    const uint64_t delta = ns_for_ticks(*edge - c.elapsed_ticks);
    uint64_t when = delta > UINT64_MAX - load_ns_[0] ? UINT64_MAX : load_ns_[0] + delta;
    if (c.mode == 2 || c.mode == 3) when = std::max(when, not_before_ns_);
    timers_.arm(timer_id_, when);
  }

  // Returns whether an IRQ 0 edge is due.
  bool on_timer_locked(uint64_t t) {
    if (!next_edge_tick_) return false;
    const bool due = ticks(0, t) >= *next_edge_tick_;
    const Channel& c = s_.channels[0];
    if (due && (c.mode == 2 || c.mode == 3) && ns_for_ticks(c.count) < kMinPeriodicTimerNs) {
      not_before_ns_ = t + kMinPeriodicTimerNs;
    }
    schedule_locked();  // coalesces any periods missed while the host was late
    return due;
  }

  void on_timer(uint64_t t) {
    bool edge;
    std::function<void()> cb;
    {
      std::lock_guard lock(mutex_);
      edge = on_timer_locked(t);
      cb = irq0_;
    }
    if (edge && cb) cb();
  }

  void load_count(unsigned ch, uint32_t raw) {
    Channel& c = s_.channels[ch];
    if (ch == 0) not_before_ns_ = 0;
    const uint64_t t = now();
    uint32_t n = c.bcd ? from_bcd(static_cast<uint16_t>(raw)) : raw;
    if (n == 0) n = modulus(c);
    if ((c.mode == 2 || c.mode == 3) && n == 1) n = 2;  // 1 is illegal in these modes
    c.count = n;
    c.null_count = false;
    c.counting = true;
    if (c.mode == 1 || c.mode == 5) {
      c.armed = true;  // waits for a gate trigger
      c.elapsed_ticks = 0;
      load_ns_[ch] = t;
    } else {
      // Modes 0 and 4 start over; modes 2 and 3 start over as well (the 8254
      // would finish the current period first; no guest relies on that).
      restart(ch, t);
    }
  }

  void write_counter(unsigned ch, uint8_t v) {
    Channel& c = s_.channels[ch];
    switch (c.access) {
      case 1: load_count(ch, v); break;
      case 2: load_count(ch, uint32_t{v} << 8); break;
      default:
        if (!c.write_high_next) {
          c.write_low = v;
          c.write_high_next = true;
          if (c.mode == 0) {
            checkpoint(ch, now());
            c.counting = false;  // writing the first byte stops the count in mode 0
          }
        } else {
          c.write_high_next = false;
          load_count(ch, c.write_low | (uint32_t{v} << 8));
        }
        break;
    }
    if (ch == 0) schedule_locked();
  }

  uint16_t visible_value(unsigned ch, uint64_t t) const {
    const Channel& c = s_.channels[ch];
    const uint32_t v = value(ch, t);
    return c.bcd ? to_bcd(v) : static_cast<uint16_t>(v);
  }

  uint8_t read_counter(unsigned ch) {
    Channel& c = s_.channels[ch];
    if (c.status_latched) {
      c.status_latched = false;
      return c.status;
    }
    if (c.latched) {
      const uint16_t v = c.latched_value;
      switch (c.access) {
        case 1: c.latched = false; return static_cast<uint8_t>(v);
        case 2: c.latched = false; return static_cast<uint8_t>(v >> 8);
        default:
          if (!c.latched_high_next) {
            c.latched_high_next = true;
            return static_cast<uint8_t>(v);
          }
          c.latched_high_next = false;
          c.latched = false;
          return static_cast<uint8_t>(v >> 8);
      }
    }
    const uint16_t v = visible_value(ch, now());
    switch (c.access) {
      case 1: return static_cast<uint8_t>(v);
      case 2: return static_cast<uint8_t>(v >> 8);
      default:
        c.read_high_next = !c.read_high_next;
        return c.read_high_next ? static_cast<uint8_t>(v) : static_cast<uint8_t>(v >> 8);
    }
  }

  void latch_count(unsigned ch) {
    Channel& c = s_.channels[ch];
    if (c.latched) return;  // the first latch holds until read
    c.latched = true;
    c.latched_high_next = false;
    c.latched_value = visible_value(ch, now());
  }

  void latch_status(unsigned ch) {
    Channel& c = s_.channels[ch];
    if (c.status_latched) return;
    c.status_latched = true;
    c.status = static_cast<uint8_t>((output(ch, now()) ? 0x80 : 0) | (c.null_count ? 0x40 : 0) | (c.access << 4) |
                                    (c.mode << 1) | (c.bcd ? 1 : 0));
  }

  void write_control(uint8_t v) {
    const unsigned select = v >> 6;
    if (select == 3) {
      // Read-back: bit 5 clear = latch count, bit 4 clear = latch status,
      // bits 3:1 select channels 2, 1, 0.
      for (unsigned ch = 0; ch < 3; ++ch) {
        if (!(v & (2u << ch))) continue;
        if (!(v & 0x20)) latch_count(ch);
        if (!(v & 0x10)) latch_status(ch);
      }
      return;
    }
    const unsigned access = (v >> 4) & 3;
    if (access == 0) {
      latch_count(select);
      return;
    }
    Channel& c = s_.channels[select];
    unsigned mode = (v >> 1) & 7;
    if (mode > 5) mode -= 4;  // 6 and 7 are aliases of 2 and 3
    c.mode = static_cast<uint8_t>(mode);
    c.access = static_cast<uint8_t>(access);
    c.bcd = v & 1;
    c.counting = false;  // a new mode waits for its count
    c.armed = true;
    c.null_count = true;
    c.write_high_next = false;
    c.read_high_next = false;
    c.latched = false;
    c.latched_high_next = false;
    c.status_latched = false;
    c.elapsed_ticks = 0;
    if (select == 0) schedule_locked();
  }

  void set_gate(unsigned ch, bool high) {
    Channel& c = s_.channels[ch];
    if (c.gate == high) return;
    const uint64_t t = now();
    checkpoint(ch, t);
    c.gate = high;
    if (high && c.counting) {
      if (c.mode == 1 || c.mode == 5) {
        c.armed = false;  // trigger (or retrigger)
        restart(ch, t);
      } else if (c.mode == 2 || c.mode == 3) {
        restart(ch, t);  // the rising gate reloads the count
      }
    }
    if (ch == 0) schedule_locked();
  }

  PlatformTimers& timers_;
  PlatformTimers::TimerId timer_id_ = 0;
  mutable std::mutex mutex_;
  State s_;
  std::array<uint64_t, 3> load_ns_{};       // clock time elapsed_ticks refers to
  std::optional<uint64_t> next_edge_tick_;  // channel 0
  uint64_t not_before_ns_ = 0;              // rate limit of short periods (kMinPeriodicTimerNs)
  std::function<void()> irq0_;
};

Pit::Pit(PlatformTimers& timers) : impl_(std::make_unique<Impl>(timers)) {}

Pit::~Pit() = default;

void Pit::reset() {
  std::lock_guard lock(impl_->mutex_);
  impl_->reset_locked();
}

uint8_t Pit::read_port(uint16_t port) {
  if (port < kChannel0 || port > kChannel2) return 0xff;
  std::lock_guard lock(impl_->mutex_);
  return impl_->read_counter(port - kChannel0);
}

void Pit::write_port(uint16_t port, uint8_t value) {
  std::lock_guard lock(impl_->mutex_);
  if (port == kControl) {
    impl_->write_control(value);
  } else if (port >= kChannel0 && port <= kChannel2) {
    impl_->write_counter(port - kChannel0, value);
  }
}

void Pit::set_channel2_gate(bool high) {
  std::lock_guard lock(impl_->mutex_);
  impl_->set_gate(2, high);
}

bool Pit::channel2_gate() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->s_.channels[2].gate;
}

bool Pit::channel_output(unsigned channel) {
  if (channel > 2) return false;
  std::lock_guard lock(impl_->mutex_);
  return impl_->output(channel, impl_->now());
}

void Pit::set_irq0_callback(std::function<void()> callback) {
  std::lock_guard lock(impl_->mutex_);
  impl_->irq0_ = std::move(callback);
}

void Pit::on_timer(uint64_t now_ns) { impl_->on_timer(now_ns); }

Pit::State Pit::save() const {
  std::lock_guard lock(impl_->mutex_);
  State s = impl_->s_;
  const uint64_t t = impl_->now();
  for (unsigned ch = 0; ch < 3; ++ch) s.channels[ch].elapsed_ticks = impl_->ticks(ch, t);
  return s;
}

void Pit::restore(const State& state) {
  std::lock_guard lock(impl_->mutex_);
  impl_->s_ = state;
  const uint64_t t = impl_->now();
  for (unsigned ch = 0; ch < 3; ++ch) {
    Channel& c = impl_->s_.channels[ch];
    if (c.mode > 5) c.mode = 0;
    if (c.access < 1 || c.access > 3) c.access = 3;
    if (c.count == 0 || c.count > 0x10000) c.count = 0x10000;
    if ((c.mode == 2 || c.mode == 3) && c.count < 2) c.count = 2;
    if (ch < 2) c.gate = true;
    impl_->load_ns_[ch] = t;
  }
  impl_->not_before_ns_ = 0;
  impl_->schedule_locked();
}

}  // namespace hostvisor::emu
