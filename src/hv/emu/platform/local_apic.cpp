#include "hv/emu/platform/local_apic.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

#include "hv/emu/platform/apic_bus.h"

namespace hostvisor::emu {

namespace {

// Indices into State::lvt.
enum Lvt : unsigned { kLvtTimer = 0, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError, kLvtCount };
static_assert(unsigned{kLvtCount} == unsigned{LocalApicState::kLvtCount});

constexpr uint32_t kLvtMasked = 1u << 16;
constexpr uint32_t kLvtLevel = 1u << 15;
constexpr uint32_t kLvtRemoteIrr = 1u << 14;
constexpr uint32_t kLvtTimerModeMask = 3u << 17;
constexpr uint32_t kLvtTimerPeriodic = 1u << 17;  // (0 = one-shot)
constexpr uint32_t kLvtTimerTscDeadline = 2u << 17;
// Writable bits of each LVT register (SDM figure "Local Vector Table").
constexpr std::array<uint32_t, kLvtCount> kLvtWritable = {
    0x000700ff,  // timer: vector, mask, mode
    0x000107ff,  // thermal: vector, delivery mode, mask
    0x000107ff,  // performance counters
    0x0001a7ff,  // LINT0: vector, delivery mode, polarity, trigger, mask
    0x0001a7ff,  // LINT1
    0x000100ff,  // error: vector, mask
};

constexpr uint32_t kSvrEnable = 1u << 8;
constexpr uint32_t kSvrWritable = 0x3ff;  // vector, enable, focus check (no EOI-broadcast suppression)

// ESR bits.
constexpr uint32_t kEsrSendIllegalVector = 1u << 5;
constexpr uint32_t kEsrReceiveIllegalVector = 1u << 6;
constexpr uint32_t kEsrIllegalRegister = 1u << 7;

// IA32_APIC_BASE: base address bits 51:12 (MAXPHYADDR 52 at most), BSP,
// x2APIC enable, global enable; everything else is reserved.
constexpr uint64_t kApicBaseAddressMask = 0x000ffffffffff000ull;
constexpr uint64_t kApicBaseWritable =
    kApicBaseAddressMask | LocalApic::kApicBaseBsp | LocalApic::kApicBaseX2apic | LocalApic::kApicBaseEnable;

using Bits256 = std::array<uint32_t, 8>;
bool test_bit(const Bits256& b, unsigned v) { return (b[v >> 5] >> (v & 31)) & 1; }
void set_bit(Bits256& b, unsigned v) { b[v >> 5] |= 1u << (v & 31); }
void clear_bit(Bits256& b, unsigned v) { b[v >> 5] &= ~(1u << (v & 31)); }
int highest_bit(const Bits256& b) {
  for (int i = 7; i >= 0; --i) {
    if (b[i]) return i * 32 + (31 - __builtin_clz(b[i]));
  }
  return -1;
}

// Divide configuration register (bits 0, 1, 3) -> divisor.
uint32_t timer_divisor(uint32_t dcr) {
  const uint32_t code = (dcr & 3) | ((dcr >> 1) & 4);
  return code == 7 ? 1 : 2u << code;
}

std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

Error gp(const std::string& what) { return Error(ErrorCode::kGuest, what + " (#GP)"); }

}  // namespace

class LocalApic::Impl {
 public:
  Impl(LocalApic& self, uint32_t apic_id, bool bootstrap, ApicBus& bus, PlatformTimers& timers)
      : self_(self), bsp_(bootstrap), initial_id_(apic_id), bus_(bus), timers_(timers) {
    timer_id_ = timers_.add([this](uint64_t now) { on_timer(now); });
    Guard lock(*this);
    power_on_locked();
  }
  ~Impl() { timers_.disarm(timer_id_); }

  // The LAPIC's lock. Leaving it republishes needs_attention(), so every
  // state change is reflected before the lock is released.
  class Guard {
   public:
    explicit Guard(const Impl& impl) : impl_(impl), lock_(impl.mutex_) {}
    ~Guard() { impl_.refresh_attention_locked(); }

   private:
    const Impl& impl_;
    std::lock_guard<std::mutex> lock_;
  };

  void refresh_attention_locked() const {
    const bool attention = s_.init_pending || s_.nmi_pending || s_.sipi_pending || s_.waiting_for_sipi ||
                           extint_requested_locked() || pending_vector_locked().has_value();
    attention_.store(attention, std::memory_order_release);
    if (attention) {
      if (std::atomic<uint32_t>* poke = attention_poke_.load(std::memory_order_acquire))
        poke->store(1, std::memory_order_release);
    }
  }

  // Side effects collected under the lock and performed after releasing it,
  // so the LAPIC never calls other components (or itself) while locked.
  struct Actions {
    bool wake = false;
    std::optional<ApicMessage> ipi;
    std::optional<uint8_t> eoi_vector;
  };

  void run(Actions& a) {
    if (a.ipi) bus_.deliver(*a.ipi, &self_);
    if (a.eoi_vector) bus_.broadcast_eoi(*a.eoi_vector);
    if (a.wake) {
      std::function<void()> wake;
      {
        Guard lock(*this);
        wake = wakeup_;
      }
      if (wake) wake();
    }
  }

  // ---- state helpers (mutex_ held) ----
  bool hw_enabled() const { return s_.apic_base & kApicBaseEnable; }
  bool sw_enabled() const { return s_.svr & kSvrEnable; }
  bool x2apic() const { return hw_enabled() && (s_.apic_base & kApicBaseX2apic); }
  uint64_t now() const { return timers_.clock().now_ns(); }

  void reset_registers_locked() {
    s_.tpr = 0;
    s_.ldr = 0;
    s_.dfr = 0xffffffff;
    s_.svr = 0xff;
    s_.esr = s_.esr_pending = 0;
    s_.icr_low = s_.icr_high = 0;
    s_.lvt.fill(kLvtMasked);
    // Virtual-wire mode on the BSP (what firmware sets up and KVM resets to):
    // LINT0 unmasked ExtINT, so PIC-only guests get interrupts.
    if (bsp_) s_.lvt[kLvtLint0] = static_cast<uint32_t>(DeliveryMode::kExtInt) << 8;
    s_.timer_initial = 0;
    s_.timer_divide = 0;
    s_.timer_running = false;
    s_.tsc_deadline = 0;
    s_.irr.fill(0);
    s_.isr.fill(0);
    s_.tmr.fill(0);
    s_.nmi_pending = s_.init_pending = s_.sipi_pending = false;
    s_.sipi_vector = 0;
    s_.extint_pending = false;
    if (x2apic()) s_.ldr = x2apic_ldr();
    update_timer_locked();
  }

  void power_on_locked() {
    s_.apic_base = kDefaultBase | kApicBaseEnable | (bsp_ ? kApicBaseBsp : 0);
    s_.id = initial_id_;
    // tsc_offset_ is kept: the CPU core owns the guest's TSC and sets it.
    s_.lint0_level = s_.lint1_level = false;
    reset_registers_locked();
    s_.waiting_for_sipi = !bsp_;
  }

  uint32_t x2apic_ldr() const { return ((s_.id >> 4) << 16) | (1u << (s_.id & 15)); }

  uint32_t ppr() const {
    const int isrv = highest_bit(s_.isr);
    const uint32_t tpr = s_.tpr & 0xff;
    const uint32_t isr_class = isrv < 0 ? 0 : static_cast<uint32_t>(isrv) & 0xf0;
    return (tpr & 0xf0) >= isr_class ? tpr : isr_class;
  }

  std::optional<uint8_t> pending_vector_locked() const {
    if (!hw_enabled()) return std::nullopt;
    const int irrv = highest_bit(s_.irr);
    if (irrv < 0) return std::nullopt;
    if ((static_cast<uint32_t>(irrv) & 0xf0) <= (ppr() & 0xf0)) return std::nullopt;
    return static_cast<uint8_t>(irrv);
  }

  bool extint_requested_locked() const {
    if (s_.extint_pending) return true;
    if (!s_.lint0_level) return false;
    // Globally disabled: LINT0 is the processor's INTR pin.
    if (!hw_enabled()) return true;
    const uint32_t lvt = s_.lvt[kLvtLint0];
    return !(lvt & kLvtMasked) && ((lvt >> 8) & 7) == static_cast<uint32_t>(DeliveryMode::kExtInt);
  }

  // Sets an IRR bit for a locally or remotely sourced fixed interrupt.
  void raise_locked(uint8_t vector, bool level, Actions& a) {
    if (vector < 16) {
      error_locked(kEsrReceiveIllegalVector, a);
      return;
    }
    set_bit(s_.irr, vector);
    if (level) {
      set_bit(s_.tmr, vector);
    } else {
      clear_bit(s_.tmr, vector);
    }
    a.wake = true;
  }

  void error_locked(uint32_t bits, Actions& a) {
    const bool is_new = (s_.esr_pending & bits) != bits;
    s_.esr_pending |= bits;
    const uint32_t lvt = s_.lvt[kLvtError];
    // An illegal error vector would recurse; the ESR bit is recorded anyway.
    if (is_new && !(lvt & kLvtMasked) && (lvt & 0xff) >= 16) raise_locked(lvt & 0xff, false, a);
  }

  // Delivers an LVT entry's interrupt (timer, LINT, thermal, ...).
  void fire_lvt_locked(unsigned index, Actions& a) {
    const uint32_t lvt = s_.lvt[index];
    if (lvt & kLvtMasked) return;
    const auto mode = static_cast<DeliveryMode>(index == kLvtTimer || index == kLvtError ? 0 : (lvt >> 8) & 7);
    switch (mode) {
      case DeliveryMode::kFixed: raise_locked(lvt & 0xff, (lvt & kLvtLevel) && index >= kLvtLint0, a); break;
      case DeliveryMode::kNmi:
        s_.nmi_pending = true;
        a.wake = true;
        break;
      case DeliveryMode::kInit:
        s_.init_pending = true;
        a.wake = true;
        break;
      case DeliveryMode::kExtInt: a.wake = true; break;  // has_interrupt() follows LINT0
      default: break;                                    // SMI and reserved: ignored
    }
  }

  // ---- timer (mutex_ held) ----
  uint32_t timer_mode() const { return s_.lvt[kLvtTimer] & kLvtTimerModeMask; }
  uint64_t tick_ns() const { return kNsPerCrystalTick * timer_divisor(s_.timer_divide); }
  uint64_t period_ns() const { return uint64_t{s_.timer_initial} * tick_ns(); }
  uint64_t guest_tsc_at(uint64_t ns) const { return tsc_at_ns(ns) + tsc_offset_; }

  uint32_t current_count_locked() const {
    if (!s_.timer_running || s_.timer_initial == 0 || timer_mode() == kLvtTimerTscDeadline) return 0;
    const uint64_t t = now();
    const uint64_t elapsed = t - timer_load_ns_;
    const uint64_t ticks = elapsed / tick_ns();
    if (timer_mode() == kLvtTimerPeriodic) return s_.timer_initial - static_cast<uint32_t>(ticks % s_.timer_initial);
    return ticks >= s_.timer_initial ? 0 : s_.timer_initial - static_cast<uint32_t>(ticks);
  }

  // Arms the shared timer service for the next expiry, or disarms it.
  void update_timer_locked() {
    if (timer_mode() == kLvtTimerTscDeadline) {
      if (s_.tsc_deadline == 0) {
        timers_.disarm(timer_id_);
        return;
      }
      const uint64_t t = now();
      const uint64_t gtsc = guest_tsc_at(t);
      if (s_.tsc_deadline <= gtsc) {
        timers_.arm(timer_id_, t);
        return;
      }
      const uint64_t delta_ns = ns_at_tsc(s_.tsc_deadline - gtsc);
      timers_.arm(timer_id_, delta_ns > UINT64_MAX - t ? UINT64_MAX : t + delta_ns);
      return;
    }
    if (!s_.timer_running || s_.timer_initial == 0) {
      timers_.disarm(timer_id_);
      return;
    }
    const uint64_t t = now(), elapsed = t - timer_load_ns_, period = period_ns();
    uint64_t when = elapsed >= period ? t : t + (period - elapsed);
    if (timer_mode() == kLvtTimerPeriodic) when = std::max(when, periodic_not_before_ns_);
    timers_.arm(timer_id_, when);
  }

  void start_countdown_locked() {
    timer_load_ns_ = now();
    periodic_not_before_ns_ = 0;
    s_.timer_running = s_.timer_initial != 0;
    update_timer_locked();
  }

  void on_timer(uint64_t t) {
    Actions a;
    {
      Guard lock(*this);
      if (timer_mode() == kLvtTimerTscDeadline) {
        if (s_.tsc_deadline != 0 && guest_tsc_at(t) >= s_.tsc_deadline) {
          s_.tsc_deadline = 0;  // one shot: the MSR reads 0 after expiry
          fire_lvt_locked(kLvtTimer, a);
        }
      } else if (s_.timer_running && s_.timer_initial != 0) {
        const uint64_t period = period_ns();
        if (t - timer_load_ns_ >= period) {
          fire_lvt_locked(kLvtTimer, a);
          if (timer_mode() == kLvtTimerPeriodic) {
            // Coalesce missed periods into this one interrupt, keeping the phase.
            timer_load_ns_ += (t - timer_load_ns_) / period * period;
            if (period < kMinPeriodicTimerNs) periodic_not_before_ns_ = t + kMinPeriodicTimerNs;
          } else {
            s_.timer_running = false;
          }
        }
      }
      update_timer_locked();
    }
    run(a);
  }

  // ---- register access (mutex_ held). Offsets are xAPIC offsets. ----
  // Returns nullopt for offsets that are not readable registers.
  std::optional<uint64_t> read_register_locked(uint32_t offset) const {
    switch (offset) {
      case kRegId: return x2apic() ? s_.id : s_.id << 24;
      case kRegVersion: return kVersion;
      case kRegTpr: return s_.tpr;
      case kRegApr: return x2apic() ? std::nullopt : std::optional<uint64_t>(0);
      case kRegPpr: return ppr();
      case kRegEoi: return x2apic() ? std::nullopt : std::optional<uint64_t>(0);
      case kRegRrd: return x2apic() ? std::nullopt : std::optional<uint64_t>(0);
      case kRegLdr: return s_.ldr;
      case kRegDfr: return x2apic() ? std::nullopt : std::optional<uint64_t>(s_.dfr);
      case kRegSvr: return s_.svr;
      case kRegEsr: return s_.esr;
      case kRegIcrLow:
        return x2apic() ? (uint64_t{s_.icr_high} << 32) | s_.icr_low : s_.icr_low;  // delivery is instant: idle
      case kRegIcrHigh: return x2apic() ? std::nullopt : std::optional<uint64_t>(s_.icr_high);
      case kRegLvtTimer: return s_.lvt[kLvtTimer];
      case kRegLvtThermal: return s_.lvt[kLvtThermal];
      case kRegLvtPerf: return s_.lvt[kLvtPerf];
      case kRegLvtLint0: return s_.lvt[kLvtLint0];
      case kRegLvtLint1: return s_.lvt[kLvtLint1];
      case kRegLvtError: return s_.lvt[kLvtError];
      case kRegTimerInitial: return s_.timer_initial;
      case kRegTimerCurrent: return current_count_locked();
      case kRegTimerDivide: return s_.timer_divide;
      default: break;
    }
    if (offset >= kRegIsr && offset < kRegIsr + 0x80) return s_.isr[(offset - kRegIsr) >> 4];
    if (offset >= kRegTmr && offset < kRegTmr + 0x80) return s_.tmr[(offset - kRegTmr) >> 4];
    if (offset >= kRegIrr && offset < kRegIrr + 0x80) return s_.irr[(offset - kRegIrr) >> 4];
    return std::nullopt;
  }

  // Writes a register. Returns false for a write the hardware rejects (the
  // x2APIC MSR path turns that into #GP; the MMIO path ignores it).
  bool write_register_locked(uint32_t offset, uint64_t value, Actions& a) {
    const auto v32 = static_cast<uint32_t>(value);
    switch (offset) {
      case kRegId:
        if (x2apic()) return false;  // read-only in x2APIC mode
        s_.id = v32 >> 24;
        return true;
      case kRegTpr:
        s_.tpr = v32 & 0xff;
        a.wake = true;  // a lower TPR may unblock a pending vector
        return true;
      case kRegEoi:
        if (x2apic() && value != 0) return false;
        eoi_locked(a);
        return true;
      case kRegLdr:
        if (x2apic()) return false;
        s_.ldr = v32 & 0xff000000;
        return true;
      case kRegDfr:
        if (x2apic()) return false;
        s_.dfr = (v32 & 0xf0000000) | 0x0fffffff;
        return true;
      case kRegSvr: {
        s_.svr = v32 & kSvrWritable;
        if (!sw_enabled()) {
          for (uint32_t& lvt : s_.lvt) lvt |= kLvtMasked;
        }
        a.wake = true;
        return true;
      }
      case kRegEsr:
        if (x2apic() && value != 0) return false;
        s_.esr = s_.esr_pending;
        s_.esr_pending = 0;
        return true;
      case kRegIcrLow:
        if (x2apic()) {
          s_.icr_high = static_cast<uint32_t>(value >> 32);
          s_.icr_low = v32 & ~(1u << 12);
        } else {
          s_.icr_low = v32 & ~(1u << 12);  // delivery status is read-only
        }
        send_ipi_locked(a);
        return true;
      case kRegIcrHigh:
        if (x2apic()) return false;
        s_.icr_high = v32 & 0xff000000;
        return true;
      case kRegLvtTimer: {
        const bool was_deadline = timer_mode() == kLvtTimerTscDeadline;
        write_lvt_locked(kLvtTimer, v32);
        if (timer_mode() == kLvtTimerModeMask) s_.lvt[kLvtTimer] &= ~kLvtTimerModeMask;  // reserved: one-shot
        if (was_deadline != (timer_mode() == kLvtTimerTscDeadline)) {
          // Entering or leaving TSC-deadline mode disarms the timer (SDM
          // 10.5.4.1); one-shot <-> periodic keeps counting, and the new mode
          // applies at expiry.
          s_.timer_running = false;
          s_.timer_initial = 0;
          s_.tsc_deadline = 0;
        }
        update_timer_locked();
        return true;
      }
      case kRegLvtThermal: write_lvt_locked(kLvtThermal, v32); return true;
      case kRegLvtPerf: write_lvt_locked(kLvtPerf, v32); return true;
      case kRegLvtLint0:
        write_lvt_locked(kLvtLint0, v32);
        a.wake = true;  // may have switched ExtINT on with INTR already high
        return true;
      case kRegLvtLint1: write_lvt_locked(kLvtLint1, v32); return true;
      case kRegLvtError: write_lvt_locked(kLvtError, v32); return true;
      case kRegTimerInitial:
        if (timer_mode() == kLvtTimerTscDeadline) return true;  // ignored in TSC-deadline mode
        s_.timer_initial = v32;
        start_countdown_locked();
        return true;
      case kRegTimerDivide: {
        // Keep the current count; continue counting at the new rate.
        const uint32_t current = current_count_locked();
        const bool was_running = s_.timer_running;
        s_.timer_divide = v32 & 0xb;
        if (was_running && timer_mode() != kLvtTimerTscDeadline) {
          const uint64_t done_ticks = s_.timer_initial - current;
          const uint64_t t = now();
          const uint64_t back = done_ticks * tick_ns();
          timer_load_ns_ = t - back;
          update_timer_locked();
        }
        return true;
      }
      case kRegSelfIpi:
        if (!x2apic()) return false;
        raise_locked(v32 & 0xff, false, a);
        return true;
      default: return false;  // read-only or reserved
    }
  }

  void write_lvt_locked(unsigned index, uint32_t value) {
    uint32_t v = (value & kLvtWritable[index]) | (s_.lvt[index] & kLvtRemoteIrr);
    if (!sw_enabled()) v |= kLvtMasked;  // LVTs stay masked while software-disabled
    s_.lvt[index] = v;
  }

  void eoi_locked(Actions& a) {
    const int v = highest_bit(s_.isr);
    if (v < 0) return;  // EOI with nothing in service: ignored
    clear_bit(s_.isr, static_cast<unsigned>(v));
    if (test_bit(s_.tmr, static_cast<unsigned>(v))) {
      clear_bit(s_.tmr, static_cast<unsigned>(v));
      a.eoi_vector = static_cast<uint8_t>(v);
    }
    a.wake = true;  // PPR dropped
  }

  void send_ipi_locked(Actions& a) {
    const uint32_t icr = s_.icr_low;
    ApicMessage m;
    m.vector = icr & 0xff;
    m.mode = static_cast<DeliveryMode>((icr >> 8) & 7);
    m.logical = (icr >> 11) & 1;
    m.assert_level = (icr >> 14) & 1;
    m.level_triggered = (icr >> 15) & 1;
    m.shorthand = static_cast<DestinationShorthand>((icr >> 18) & 3);
    m.destination = x2apic() ? s_.icr_high : s_.icr_high >> 24;
    switch (m.mode) {
      case DeliveryMode::kFixed:
      case DeliveryMode::kLowestPriority:
        if (m.vector < 16) {
          error_locked(kEsrSendIllegalVector, a);
          return;
        }
        // An IPI's trigger mode matters only for the target's TMR; Fixed IPIs
        // are edge on xAPICs whatever the guest wrote (SDM 10.6.1).
        m.level_triggered = false;
        break;
      case DeliveryMode::kInit:
        if (m.level_triggered && !m.assert_level) return;  // INIT level de-assert: no effect
        break;
      case DeliveryMode::kStartup:
      case DeliveryMode::kNmi:
      case DeliveryMode::kSmi: break;
      case DeliveryMode::kExtInt: return;  // not a valid ICR mode
    }
    a.ipi = m;
  }

  void accept(const ApicMessage& m) {
    Actions a;
    {
      Guard lock(*this);
      if (!hw_enabled()) return;
      switch (m.mode) {
        case DeliveryMode::kFixed:
        case DeliveryMode::kLowestPriority:
          if (!sw_enabled()) break;  // a software-disabled APIC drops fixed interrupts
          raise_locked(m.vector, m.level_triggered, a);
          break;
        case DeliveryMode::kNmi:
          s_.nmi_pending = true;
          a.wake = true;
          break;
        case DeliveryMode::kInit:
          if (m.level_triggered && !m.assert_level) break;
          s_.init_pending = true;
          a.wake = true;
          break;
        case DeliveryMode::kStartup:
          // Only a processor in wait-for-SIPI (or about to enter it, with an
          // INIT not yet taken by the core) takes the first SIPI.
          if ((s_.waiting_for_sipi || s_.init_pending) && !s_.sipi_pending) {
            s_.sipi_pending = true;
            s_.sipi_vector = m.vector;
            a.wake = true;
          }
          break;
        case DeliveryMode::kExtInt:
          s_.extint_pending = true;
          a.wake = true;
          break;
        case DeliveryMode::kSmi: break;  // no SMM
      }
    }
    run(a);
  }

  void set_lint(unsigned index, bool level) {
    Actions a;
    {
      Guard lock(*this);
      bool& current = index == kLvtLint0 ? s_.lint0_level : s_.lint1_level;
      const bool rising = level && !current;
      current = level;
      const uint32_t lvt = s_.lvt[index];
      const auto mode = static_cast<DeliveryMode>((lvt >> 8) & 7);
      if (index == kLvtLint0 && !hw_enabled()) {
        a.wake = rising;  // INTR pin
      } else if (mode == DeliveryMode::kExtInt) {
        a.wake = rising && !(lvt & kLvtMasked);
      } else if (rising && hw_enabled()) {
        fire_lvt_locked(index, a);
      }
    }
    run(a);
  }

  bool matches(uint32_t dest, bool logical) const {
    Guard lock(*this);
    if (!hw_enabled()) return false;
    if (x2apic()) {
      if (dest == kX2apicBroadcast) return true;
      if (!logical) return dest == s_.id || dest == kXapicBroadcast;
      return (dest >> 16) == (s_.ldr >> 16) && (dest & s_.ldr & 0xffff) != 0;
    }
    const uint32_t d = dest & 0xff;
    if (d == kXapicBroadcast || dest == kX2apicBroadcast) return true;
    if (!logical) return d == (s_.id & 0xff);
    const uint32_t ldr = s_.ldr >> 24;
    if ((s_.dfr >> 28) == 0xf) return (ldr & d) != 0;       // flat model
    return (d >> 4) == (ldr >> 4) && (d & ldr & 0xf) != 0;  // cluster model
  }

  Result<uint64_t> msr_read(uint32_t index) {
    Guard lock(*this);
    if (index == kMsrApicBase) return s_.apic_base;
    if (index == kMsrTscDeadline) return timer_mode() == kLvtTimerTscDeadline ? s_.tsc_deadline : 0;
    if (!x2apic()) return gp("RDMSR " + hex(index) + ": x2APIC register while the APIC is not in x2APIC mode");
    const uint32_t offset = (index - kMsrX2apicFirst) << 4;
    if (offset == kRegSelfIpi) return gp("RDMSR " + hex(index) + ": SELF IPI is write-only");
    auto v = read_register_locked(offset);
    if (!v) return gp("RDMSR " + hex(index) + ": no such x2APIC register");
    return *v;
  }

  Result<void> msr_write(uint32_t index, uint64_t value) {
    Actions a;
    Result<void> result;
    {
      Guard lock(*this);
      if (index == kMsrApicBase) {
        result = write_apic_base_locked(value, a);
      } else if (index == kMsrTscDeadline) {
        if (timer_mode() == kLvtTimerTscDeadline) {  // ignored in other modes (SDM 10.5.4.1)
          s_.tsc_deadline = value;
          update_timer_locked();
        }
      } else if (!x2apic()) {
        result = gp("WRMSR " + hex(index) + ": x2APIC register while the APIC is not in x2APIC mode");
      } else {
        const uint32_t offset = (index - kMsrX2apicFirst) << 4;
        if (offset != kRegIcrLow && (value >> 32) != 0) {
          result = gp("WRMSR " + hex(index) + ": reserved bits 63:32 set in " + hex(value));
        } else if (!write_register_locked(offset, value, a)) {
          result = gp("WRMSR " + hex(index) + ": read-only or reserved x2APIC register");
        }
      }
    }
    run(a);
    return result;
  }

  Result<void> write_apic_base_locked(uint64_t value, Actions& a) {
    if (value & ~kApicBaseWritable) return gp("WRMSR IA32_APIC_BASE " + hex(value) + ": reserved bits set");
    const bool was_enabled = hw_enabled();
    const bool was_x2 = x2apic();
    const bool enable = value & kApicBaseEnable;
    const bool x2 = value & kApicBaseX2apic;
    if (x2 && !enable) return gp("WRMSR IA32_APIC_BASE " + hex(value) + ": x2APIC enable without global enable");
    if (was_x2 && enable && !x2)
      return gp("WRMSR IA32_APIC_BASE " + hex(value) + ": x2APIC to xAPIC needs a disable first");
    if (!was_enabled && x2)
      return gp("WRMSR IA32_APIC_BASE " + hex(value) + ": disabled to x2APIC needs xAPIC mode first");
    // The BSP flag is the processor's, not software's.
    s_.apic_base = (value & (kApicBaseAddressMask | kApicBaseX2apic | kApicBaseEnable)) | (bsp_ ? kApicBaseBsp : 0);
    if (was_enabled && !enable) {
      // Globally disabled: the APIC returns to its power-up state; LINT0
      // becomes the INTR pin.
      s_.id = initial_id_;
      reset_registers_locked();
      a.wake = true;
    } else if (!was_x2 && x2) {
      s_.id = initial_id_;  // x2APIC ids are the initial id, not the xAPIC register
      s_.ldr = x2apic_ldr();
    }
    return {};
  }

  LocalApic& self_;
  const bool bsp_;
  const uint32_t initial_id_;
  ApicBus& bus_;
  PlatformTimers& timers_;
  PlatformTimers::TimerId timer_id_ = 0;

  mutable std::mutex mutex_;
  mutable std::atomic<bool> attention_{false};
  std::atomic<std::atomic<uint32_t>*> attention_poke_{nullptr};
  State s_;
  // Guest TSC = tsc_at_ns(clock) + tsc_offset_: the CPU core owns the TSC and
  // sets it, so it is not part of State (a restore keeps it).
  uint64_t tsc_offset_ = 0;
  // Clock time the current period started, modulo 2^64: a count restored
  // onto a younger clock started before its zero. Only differences to the
  // clock's now are used.
  uint64_t timer_load_ns_ = 0;
  // Rate limit of short periodic timers (see kMinPeriodicTimerNs).
  uint64_t periodic_not_before_ns_ = 0;
  std::function<void()> wakeup_;
  std::function<uint8_t()> extint_source_;
};

LocalApic::LocalApic(uint32_t apic_id, bool bootstrap, ApicBus& bus, PlatformTimers& timers)
    : impl_(std::make_unique<Impl>(*this, apic_id, bootstrap, bus, timers)) {}

LocalApic::~LocalApic() = default;

void LocalApic::reset() {
  {
    Impl::Guard lock(*impl_);
    impl_->power_on_locked();
  }
  Impl::Actions a;
  a.wake = true;
  impl_->run(a);
}

uint32_t LocalApic::id() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.id;
}

bool LocalApic::is_bootstrap() const { return impl_->bsp_; }

uint64_t LocalApic::base_address() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.apic_base & kApicBaseAddressMask;
}

bool LocalApic::mmio_enabled() const {
  Impl::Guard lock(*impl_);
  return impl_->hw_enabled() && !impl_->x2apic();
}

bool LocalApic::x2apic_mode() const {
  Impl::Guard lock(*impl_);
  return impl_->x2apic();
}

void LocalApic::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= kMmioSize || data.empty() || data.size() > 4) return;
  const uint64_t within = offset & 0xf;
  if (within + data.size() > 4) return;  // only the low 4 bytes of a slot hold a register
  uint32_t value = 0;
  bool valid = false;
  Impl::Actions a;
  {
    Impl::Guard lock(*impl_);
    if (impl_->x2apic()) return;
    const auto v = impl_->read_register_locked(static_cast<uint32_t>(offset & ~uint64_t{0xf}));
    if (v) {
      value = static_cast<uint32_t>(*v);
      valid = true;
    } else {
      impl_->error_locked(kEsrIllegalRegister, a);
    }
  }
  impl_->run(a);
  if (valid) std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&value) + within, data.size());
}

void LocalApic::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kMmioSize || data.size() != 4 || (offset & 0xf) != 0) return;
  uint32_t value;
  std::memcpy(&value, data.data(), 4);
  Impl::Actions a;
  {
    Impl::Guard lock(*impl_);
    if (impl_->x2apic()) return;
    const auto reg = static_cast<uint32_t>(offset);
    if (reg == kRegSelfIpi || !impl_->write_register_locked(reg, value, a)) {
      // Read-only registers ignore writes silently; unknown offsets are
      // illegal-register errors.
      if (!impl_->read_register_locked(reg)) impl_->error_locked(kEsrIllegalRegister, a);
    }
  }
  impl_->run(a);
}

Result<uint64_t> LocalApic::msr_read(uint32_t index) {
  if (!is_apic_msr(index)) return Error(ErrorCode::kInvalidArgument, "MSR " + hex(index) + " is not an APIC MSR");
  return impl_->msr_read(index);
}

Result<void> LocalApic::msr_write(uint32_t index, uint64_t value) {
  if (!is_apic_msr(index)) return Error(ErrorCode::kInvalidArgument, "MSR " + hex(index) + " is not an APIC MSR");
  return impl_->msr_write(index, value);
}

uint8_t LocalApic::cr8() const {
  Impl::Guard lock(*impl_);
  return static_cast<uint8_t>((impl_->s_.tpr >> 4) & 0xf);
}

void LocalApic::set_cr8(uint8_t value) {
  {
    Impl::Guard lock(*impl_);
    impl_->s_.tpr = (value & 0xfu) << 4;
  }
  Impl::Actions a;
  a.wake = true;
  impl_->run(a);
}

void LocalApic::set_tsc_offset(uint64_t offset) {
  Impl::Guard lock(*impl_);
  impl_->tsc_offset_ = offset;
  impl_->update_timer_locked();
}

uint64_t LocalApic::guest_tsc() const {
  Impl::Guard lock(*impl_);
  return impl_->guest_tsc_at(impl_->now());
}

bool LocalApic::needs_attention() const { return impl_->attention_.load(std::memory_order_acquire); }
const std::atomic<bool>* LocalApic::attention_flag() const { return &impl_->attention_; }
void LocalApic::set_attention_poke(std::atomic<uint32_t>* word) {
  impl_->attention_poke_.store(word, std::memory_order_release);
  if (word && impl_->attention_.load(std::memory_order_acquire)) word->store(1, std::memory_order_release);
}

bool LocalApic::has_interrupt() const {
  Impl::Guard lock(*impl_);
  return impl_->extint_requested_locked() || impl_->pending_vector_locked().has_value();
}

std::optional<uint8_t> LocalApic::pending_vector() const {
  Impl::Guard lock(*impl_);
  return impl_->pending_vector_locked();
}

void LocalApic::acknowledge(uint8_t vector) {
  Impl::Guard lock(*impl_);
  if (!test_bit(impl_->s_.irr, vector)) return;
  clear_bit(impl_->s_.irr, vector);
  set_bit(impl_->s_.isr, vector);
}

std::optional<uint8_t> LocalApic::take_interrupt() {
  std::function<uint8_t()> inta;
  {
    Impl::Guard lock(*impl_);
    if (impl_->extint_requested_locked() && impl_->extint_source_) {
      impl_->s_.extint_pending = false;
      inta = impl_->extint_source_;
    } else {
      auto v = impl_->pending_vector_locked();
      if (v) {
        clear_bit(impl_->s_.irr, *v);
        set_bit(impl_->s_.isr, *v);
      }
      return v;
    }
  }
  // The PIC's INTA cycle, outside our lock (the PIC calls set_lint0 back).
  return inta();
}

bool LocalApic::has_nmi() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.nmi_pending;
}

bool LocalApic::take_nmi() {
  Impl::Guard lock(*impl_);
  return std::exchange(impl_->s_.nmi_pending, false);
}

bool LocalApic::has_init() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.init_pending;
}

bool LocalApic::take_init() {
  Impl::Guard lock(*impl_);
  State& s = impl_->s_;
  if (!s.init_pending) return false;
  // A SIPI that arrived after the INIT survives the INIT's reset.
  const bool sipi = s.sipi_pending;
  const uint8_t sipi_vector = s.sipi_vector;
  const bool lint0 = s.lint0_level, lint1 = s.lint1_level;
  impl_->reset_registers_locked();
  s.lint0_level = lint0;
  s.lint1_level = lint1;
  s.waiting_for_sipi = !impl_->bsp_;
  s.sipi_pending = sipi && s.waiting_for_sipi;
  s.sipi_vector = sipi_vector;
  return true;
}

bool LocalApic::waiting_for_sipi() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.waiting_for_sipi;
}

bool LocalApic::has_sipi() const {
  Impl::Guard lock(*impl_);
  return impl_->s_.sipi_pending;
}

std::optional<uint8_t> LocalApic::take_sipi() {
  Impl::Guard lock(*impl_);
  State& s = impl_->s_;
  // Wait for the INIT to be taken first: it would reset the started AP.
  if (!s.sipi_pending || s.init_pending) return std::nullopt;
  s.sipi_pending = false;
  s.waiting_for_sipi = false;
  return s.sipi_vector;
}

void LocalApic::set_wakeup(std::function<void()> wakeup) {
  Impl::Guard lock(*impl_);
  impl_->wakeup_ = std::move(wakeup);
}

void LocalApic::set_extint_source(std::function<uint8_t()> acknowledge) {
  Impl::Guard lock(*impl_);
  impl_->extint_source_ = std::move(acknowledge);
}

void LocalApic::accept(const ApicMessage& message) { impl_->accept(message); }

void LocalApic::set_lint0(bool level) { impl_->set_lint(kLvtLint0, level); }

void LocalApic::set_lint1(bool level) { impl_->set_lint(kLvtLint1, level); }

bool LocalApic::matches(uint32_t destination, bool logical) const { return impl_->matches(destination, logical); }

void LocalApic::on_timer(uint64_t now_ns) { impl_->on_timer(now_ns); }

LocalApic::State LocalApic::save() const {
  Impl::Guard lock(*impl_);
  State s = impl_->s_;
  const uint64_t t = impl_->now();
  s.timer_elapsed_ns = s.timer_running ? t - impl_->timer_load_ns_ : 0;
  return s;
}

void LocalApic::restore(const State& state) {
  {
    Impl::Guard lock(*impl_);
    impl_->s_ = state;
    // Keep only the bits a guest could have set.
    State& s = impl_->s_;
    s.apic_base =
        (s.apic_base & (kApicBaseAddressMask | kApicBaseX2apic | kApicBaseEnable)) | (impl_->bsp_ ? kApicBaseBsp : 0);
    for (unsigned i = 0; i < kLvtCount; ++i) s.lvt[i] &= kLvtWritable[i] | kLvtRemoteIrr;
    s.svr &= kSvrWritable;
    s.timer_divide &= 0xb;
    const uint64_t t = impl_->now();
    impl_->timer_load_ns_ = t - s.timer_elapsed_ns;
    impl_->update_timer_locked();
  }
  Impl::Actions a;
  a.wake = true;
  impl_->run(a);
}

}  // namespace hostvisor::emu
