#include "devices/legacy/cmos_rtc.h"

#include <time.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace hostvisor {

namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
// UIP rises this long before each once-a-second update (MC146818 datasheet).
constexpr int64_t kUpdateInProgressNs = 244'000;
// The time base the periodic-interrupt rates divide down.
constexpr int64_t kTicksPerSecond = 32'768;
// Guest-set times are clamped to about 1780-2160 so that nanosecond
// arithmetic on them (and on the offset to the host clock) cannot overflow,
// whatever the guest writes into the year and century registers.
constexpr int64_t kGuestSecondsLimit = 6'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// Always in [0, b) for b > 0, unlike %.
int64_t floor_mod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return r < 0 ? r + b : r;
}

int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  return r;
}

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  return r;
}

int64_t saturating_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r))
    return b < 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  return r;
}

int64_t host_realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSecond + ts.tv_nsec;
}

// Divider ticks (32.768 kHz) elapsed at guest time t, and the first
// nanosecond at which a given tick count is reached.
int64_t ticks_at(int64_t t) {
  const int64_t seconds = floor_div(t, kNsPerSecond);
  const int64_t fraction = floor_mod(t, kNsPerSecond);
  return seconds * kTicksPerSecond + fraction * kTicksPerSecond / kNsPerSecond;
}

int64_t time_of_tick(int64_t tick) {
  const int64_t seconds = floor_div(tick, kTicksPerSecond);
  const int64_t rest = tick - seconds * kTicksPerSecond;
  return saturating_add(saturating_mul(seconds, kNsPerSecond),
                        (rest * kNsPerSecond + kTicksPerSecond - 1) / kTicksPerSecond);
}

bool is_time_register(uint8_t index) {
  switch (index) {
    case CmosRtc::kSeconds:
    case CmosRtc::kMinutes:
    case CmosRtc::kHours:
    case CmosRtc::kDayOfWeek:
    case CmosRtc::kDayOfMonth:
    case CmosRtc::kMonth:
    case CmosRtc::kYear:
    case CmosRtc::kCentury: return true;
    default: return false;
  }
}

}  // namespace

CmosRtc::CmosRtc(IrqLine irq, Clock clock) : clock_(clock ? std::move(clock) : Clock(host_realtime_ns)), irq_(irq) {
  ram_[kRegA] = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate: what firmware programs
  ram_[kRegB] = kRegB24Hour;
  ram_[kRegD] = kRegDValidRam;
  events_checked_to_ns_ = guest_now_ns();
}

int64_t CmosRtc::guest_now_ns() const { return saturating_add(clock_(), guest_offset_ns_); }

// Divider values 11x hold the divider chain in reset: no updates, no periodic ticks.
bool CmosRtc::divider_running() const { return (ram_[kRegA] & kRegADividerMask) < 0x60; }

uint8_t CmosRtc::encode(int value) const {
  if (ram_[kRegB] & kRegBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

int CmosRtc::decode(uint8_t value) const {
  if (ram_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

// Hour register: 0-23, or 1-12 with bit 7 for PM in 12-hour mode.
uint8_t CmosRtc::encode_hour(int hour) const {
  if (ram_[kRegB] & kRegB24Hour) return encode(hour);
  const int twelve = hour % 12 == 0 ? 12 : hour % 12;
  return static_cast<uint8_t>(encode(twelve) | (hour >= 12 ? 0x80 : 0));
}

void CmosRtc::store_time(int64_t guest_seconds) {
  const time_t t = static_cast<time_t>(std::clamp(guest_seconds, -kGuestSecondsLimit, kGuestSecondsLimit));
  tm fields{};
  gmtime_r(&t, &fields);
  const int year = fields.tm_year + 1900;
  ram_[kSeconds] = encode(fields.tm_sec);
  ram_[kMinutes] = encode(fields.tm_min);
  ram_[kHours] = encode_hour(fields.tm_hour);
  ram_[kDayOfWeek] = encode(fields.tm_wday + 1);  // Sunday is 1
  ram_[kDayOfMonth] = encode(fields.tm_mday);
  ram_[kMonth] = encode(fields.tm_mon + 1);
  ram_[kYear] = encode(year % 100);
  ram_[kCentury] = encode(year / 100);
}

int64_t CmosRtc::registers_to_seconds() const {
  int hour;
  if (ram_[kRegB] & kRegB24Hour) {
    hour = decode(ram_[kHours]);
  } else {
    hour = decode(ram_[kHours] & 0x7f) % 12 + ((ram_[kHours] & 0x80) ? 12 : 0);
  }
  // Whatever the guest wrote, hand timegm sane fields.
  tm fields{};
  fields.tm_sec = std::clamp(decode(ram_[kSeconds]), 0, 59);
  fields.tm_min = std::clamp(decode(ram_[kMinutes]), 0, 59);
  fields.tm_hour = std::clamp(hour, 0, 23);
  fields.tm_mday = std::clamp(decode(ram_[kDayOfMonth]), 1, 31);
  fields.tm_mon = std::clamp(decode(ram_[kMonth]), 1, 12) - 1;
  fields.tm_year = decode(ram_[kCentury]) * 100 + decode(ram_[kYear]) - 1900;
  const int64_t seconds = timegm(&fields);
  return std::clamp(seconds, -kGuestSecondsLimit, kGuestSecondsLimit);
}

// Whether the alarm matches at any second boundary in (after, last]. The
// registers are compared byte for byte in the current format, as the chip
// does; a byte with both top bits set matches anything ("don't care").
bool CmosRtc::alarm_fires_between(int64_t after, int64_t last) const {
  if (last <= after) return false;
  std::array<bool, 24> hour_ok{};
  std::array<bool, 60> minute_ok{}, second_ok{};
  auto matches = [](uint8_t alarm, uint8_t current) { return (alarm & 0xc0) == 0xc0 || alarm == current; };
  bool any_second = false;
  for (int v = 0; v < 60; ++v) {
    minute_ok[v] = matches(ram_[kMinutesAlarm], encode(v));
    second_ok[v] = matches(ram_[kSecondsAlarm], encode(v));
    any_second |= second_ok[v];
  }
  for (int v = 0; v < 24; ++v) hour_ok[v] = matches(ram_[kHoursAlarm], encode_hour(v));
  if (!any_second) return false;
  // Any alarm that can match at all matches within one day, so a longer
  // quiet spell only needs its last day looked at, a minute at a time.
  int64_t s = std::max(after, last - kSecondsPerDay) + 1;
  while (s <= last) {
    const int64_t of_day = floor_mod(s, kSecondsPerDay);
    const int second = static_cast<int>(of_day % 60);
    const int64_t minute_last = std::min(last, s + (59 - second));
    if (hour_ok[of_day / 3600] && minute_ok[of_day / 60 % 60]) {
      for (int64_t x = second; x <= second + (minute_last - s); ++x)
        if (second_ok[x]) return true;
    }
    s = minute_last + 1;
  }
  return false;
}

// Sets the flags in register C for everything that happened in guest time
// (events_checked_to_ns_, now]. The flags are set whether or not their
// interrupts are enabled, as on the chip.
void CmosRtc::evaluate_events(int64_t now) {
  const int64_t from = events_checked_to_ns_;
  events_checked_to_ns_ = now;  // also follows the clock backwards
  if (now <= from || !divider_running()) return;
  uint8_t flags = 0;
  const int rate = ram_[kRegA] & kRegARateMask;
  if (rate != 0) {
    // Rates 1 and 2 give the same frequencies as 8 and 9 on a 32.768 kHz base.
    const int shift = (rate <= 2 ? rate + 7 : rate) - 1;
    if ((ticks_at(now) >> shift) > (ticks_at(from) >> shift)) flags |= kRegCPeriodic;
  }
  if (!updates_halted()) {
    const int64_t first = floor_div(from, kNsPerSecond);
    const int64_t last = floor_div(now, kNsPerSecond);
    if (last > first) {
      flags |= kRegCUpdate;
      if (alarm_fires_between(first, last)) flags |= kRegCAlarm;
    }
  }
  ram_[kRegC] |= flags;
}

// IRQF (and the IRQ 8 line) is set while any flag has its enable bit set;
// the flag and enable bits of registers B and C line up (0x70).
void CmosRtc::update_irq() {
  if (ram_[kRegC] & ram_[kRegB] & (kRegCPeriodic | kRegCAlarm | kRegCUpdate))
    ram_[kRegC] |= kRegCIrq;
  else
    ram_[kRegC] &= static_cast<uint8_t>(~kRegCIrq);
  irq_.set_level(ram_[kRegC] & kRegCIrq);
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    // The index port is write-only on the PC.
    data[i] = offset + i == 1 ? read_data() : 0xff;
  }
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i == 0) {
      index_ = data[i] & 0x7f;
      nmi_disabled_ = data[i] & 0x80;
    } else if (offset + i == 1) {
      write_data(data[i]);
    }
  }
}

uint8_t CmosRtc::read_data() {
  const uint8_t index = index_;
  if (is_time_register(index)) {
    if (!updates_halted()) store_time(floor_div(guest_now_ns(), kNsPerSecond));
    return ram_[index];
  }
  switch (index) {
    case kRegA: {
      uint8_t value = ram_[kRegA] & 0x7f;
      const int64_t now = guest_now_ns();
      const int64_t fraction = floor_mod(now, kNsPerSecond);
      if (divider_running() && !updates_halted() && fraction >= kNsPerSecond - kUpdateInProgressNs)
        value |= kRegAUpdateInProgress;
      return value;
    }
    case kRegC: {
      evaluate_events(guest_now_ns());
      update_irq();
      const uint8_t value = ram_[kRegC];
      ram_[kRegC] = 0;
      update_irq();
      return value;
    }
    case kRegD: return kRegDValidRam;
    default: return ram_[index];
  }
}

void CmosRtc::write_data(uint8_t value) {
  const uint8_t index = index_;
  if (is_time_register(index)) {
    if (updates_halted()) {
      ram_[index] = value;
      return;
    }
    // Setting one field of a running clock: the others keep counting.
    const int64_t now = guest_now_ns();
    store_time(floor_div(now, kNsPerSecond));
    ram_[index] = value;
    const int64_t new_now = registers_to_seconds() * kNsPerSecond + floor_mod(now, kNsPerSecond);
    guest_offset_ns_ = saturating_sub(new_now, clock_());
    events_checked_to_ns_ = new_now;
    return;
  }
  switch (index) {
    case kRegA:
      evaluate_events(guest_now_ns());  // ticks so far count at the old rate
      ram_[kRegA] = value & 0x7f;
      update_irq();
      return;
    case kRegB: {
      const int64_t now = guest_now_ns();
      evaluate_events(now);
      const uint8_t old = ram_[kRegB];
      if ((value & kRegBSet) && !(old & kRegBSet)) {
        // Freeze the current time in the registers for the guest to edit.
        store_time(floor_div(now, kNsPerSecond));
      } else if (!(value & kRegBSet) && (old & kRegBSet)) {
        // The guest set the clock: its time now runs from the registers,
        // decoded in the format they were written in.
        const int64_t set_ns = registers_to_seconds() * kNsPerSecond;
        guest_offset_ns_ = saturating_sub(set_ns, clock_());
        events_checked_to_ns_ = set_ns;
      }
      // Setting SET also clears the update-ended interrupt enable.
      ram_[kRegB] = (value & kRegBSet) ? static_cast<uint8_t>(value & ~kRegBUpdateIe) : value;
      update_irq();
      return;
    }
    case kRegC:
    case kRegD: return;  // read-only
    default: ram_[index] = value; return;
  }
}

void CmosRtc::set_memory_size(uint64_t ram_below_4g_bytes, uint64_t ram_above_4g_bytes) {
  constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB, k64KiB = 64 * kKiB;
  std::lock_guard lock(mutex_);
  auto put16 = [this](uint8_t at, uint64_t value) {
    ram_[at] = static_cast<uint8_t>(value);
    ram_[at + 1] = static_cast<uint8_t>(value >> 8);
  };
  put16(0x15, 640);  // base memory, KiB
  const uint64_t extended_kib =
      ram_below_4g_bytes > kMiB ? std::min<uint64_t>((ram_below_4g_bytes - kMiB) / kKiB, 0xffff) : 0;
  put16(0x17, extended_kib);  // memory above 1 MiB, KiB (as configured)
  put16(0x30, extended_kib);  // the same, as found by the power-on test
  const uint64_t above_16m =
      ram_below_4g_bytes > 16 * kMiB ? std::min<uint64_t>((ram_below_4g_bytes - 16 * kMiB) / k64KiB, 0xffff) : 0;
  put16(0x34, above_16m);
  const uint64_t above_4g = std::min<uint64_t>(ram_above_4g_bytes / k64KiB, 0xffffff);
  ram_[0x5b] = static_cast<uint8_t>(above_4g);
  ram_[0x5c] = static_cast<uint8_t>(above_4g >> 8);
  ram_[0x5d] = static_cast<uint8_t>(above_4g >> 16);
  // The standard checksum covers 0x10-0x2d and is stored big-endian.
  unsigned sum = 0;
  for (int i = 0x10; i <= 0x2d; ++i) sum += ram_[i];
  ram_[0x2e] = static_cast<uint8_t>(sum >> 8);
  ram_[0x2f] = static_cast<uint8_t>(sum);
}

void CmosRtc::poll() {
  std::lock_guard lock(mutex_);
  evaluate_events(guest_now_ns());
  update_irq();
}

std::optional<int64_t> CmosRtc::next_event_ns() const {
  std::lock_guard lock(mutex_);
  // While IRQF is set the line is already up; nothing new happens until the
  // guest reads register C.
  if (!divider_running() || (ram_[kRegC] & kRegCIrq)) return std::nullopt;
  const int64_t now = guest_now_ns();
  std::optional<int64_t> next;
  const int rate = ram_[kRegA] & kRegARateMask;
  if ((ram_[kRegB] & kRegBPeriodicIe) && rate != 0) {
    const int shift = (rate <= 2 ? rate + 7 : rate) - 1;
    next = time_of_tick(((ticks_at(now) >> shift) + 1) << shift);
  }
  if (!updates_halted() && (ram_[kRegB] & (kRegBUpdateIe | kRegBAlarmIe))) {
    const int64_t next_second = saturating_add(saturating_sub(now, floor_mod(now, kNsPerSecond)), kNsPerSecond);
    next = next ? std::min(*next, next_second) : next_second;
  }
  if (!next) return std::nullopt;
  return saturating_sub(*next, guest_offset_ns_);
}

void CmosRtc::reset() {
  std::lock_guard lock(mutex_);
  ram_[kRegB] &= static_cast<uint8_t>(~(kRegBPeriodicIe | kRegBAlarmIe | kRegBUpdateIe | kRegBSquareWave));
  ram_[kRegC] = 0;
  update_irq();
}

CmosRtc::State CmosRtc::save() const {
  std::lock_guard lock(mutex_);
  State s;
  s.ram = ram_;
  s.index = index_;
  s.nmi_disabled = nmi_disabled_;
  s.guest_offset_ns = guest_offset_ns_;
  s.events_checked_to_ns = events_checked_to_ns_;
  return s;
}

Result<void> CmosRtc::restore(const State& s) {
  if (s.index >= kRamSize)
    return Error(ErrorCode::kCorrupt, "cmos-rtc: snapshot index register " + std::to_string(s.index) +
                                          " is past the 128-byte RAM; the snapshot is damaged");
  std::lock_guard lock(mutex_);
  ram_ = s.ram;
  ram_[kRegA] &= 0x7f;  // UIP is computed, never stored
  index_ = s.index;
  nmi_disabled_ = s.nmi_disabled;
  guest_offset_ns_ = s.guest_offset_ns;
  events_checked_to_ns_ = s.events_checked_to_ns;
  update_irq();
  return {};
}

void CmosRtc::encode_state(StateWriter& out, const State& s) {
  out.put_raw(s.ram);
  out.put(s.index);
  out.put_bool(s.nmi_disabled);
  out.put(s.guest_offset_ns);
  out.put(s.events_checked_to_ns);
}

CmosRtc::State CmosRtc::decode_state(StateReader& in) {
  State s;
  in.get_raw(s.ram);
  s.index = in.get<uint8_t>();
  s.nmi_disabled = in.get_bool();
  s.guest_offset_ns = in.get<int64_t>();
  s.events_checked_to_ns = in.get<int64_t>();
  return s;
}

}  // namespace hostvisor
