#include "hv/emu/platform/io_apic.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "hv/emu/platform/apic_bus.h"

namespace hostvisor::emu {

namespace {
constexpr uint8_t kIndexId = 0x00;
constexpr uint8_t kIndexVersion = 0x01;
constexpr uint8_t kIndexArbitration = 0x02;
constexpr uint8_t kIndexFirstEntry = 0x10;
// Guest-writable bits of a redirection entry: vector, delivery mode,
// destination mode, polarity, trigger mode, mask (low dword) and the
// destination field (bits 63:56).
constexpr uint64_t kEntryWritable = 0xff0000000001afffull;
}  // namespace

class IoApic::Impl {
 public:
  Impl(ApicBus& bus, uint8_t id) : bus_(bus) { s_.id = id & 0xf; }

  void reset_locked() {
    const uint8_t id = s_.id;
    s_ = State{};
    s_.id = id;
    for (uint64_t& e : s_.entries) e = kEntryMasked;
  }

  bool asserted(unsigned pin) const { return (s_.pin_levels >> pin) & 1; }

  // Sends pin's message (IoApic lock held: the LAPICs never call back into
  // the IOAPIC while holding their own locks, so the order IOAPIC -> LAPIC
  // is safe).
  void deliver_locked(unsigned pin) {
    uint64_t& e = s_.entries[pin];
    ApicMessage m;
    m.vector = static_cast<uint8_t>(e & 0xff);
    m.mode = static_cast<DeliveryMode>((e >> 8) & 7);
    m.logical = (e >> 11) & 1;
    m.destination = static_cast<uint32_t>(e >> 56);
    m.level_triggered = (e & kEntryLevel) != 0;
    if (m.mode == DeliveryMode::kStartup || static_cast<uint8_t>(m.mode) == 3) return;  // reserved here
    // Remote IRR only makes sense for interrupts that are EOI'd: fixed and
    // lowest priority. NMI/INIT/ExtINT are delivered as edges.
    const bool eoi_tracked =
        m.level_triggered && (m.mode == DeliveryMode::kFixed || m.mode == DeliveryMode::kLowestPriority);
    if (!eoi_tracked) m.level_triggered = false;
    const size_t accepted = bus_.deliver(m);
    if (eoi_tracked && accepted > 0) e |= kEntryRemoteIrr;
  }

  // Delivers a level-triggered pin if it should be.
  void service_level_locked(unsigned pin) {
    const uint64_t e = s_.entries[pin];
    if ((e & kEntryLevel) && !(e & kEntryMasked) && !(e & kEntryRemoteIrr) && asserted(pin)) deliver_locked(pin);
  }

  uint32_t read_window_locked() const {
    const uint8_t index = s_.select;
    if (index == kIndexId || index == kIndexArbitration) return uint32_t{s_.id} << 24;
    if (index == kIndexVersion) return kVersion;
    if (index >= kIndexFirstEntry && index < kIndexFirstEntry + 2 * kPins) {
      const uint64_t e = s_.entries[(index - kIndexFirstEntry) / 2];
      return (index & 1) ? static_cast<uint32_t>(e >> 32) : static_cast<uint32_t>(e);
    }
    return 0;
  }

  void write_window_locked(uint32_t value) {
    const uint8_t index = s_.select;
    if (index == kIndexId) {
      s_.id = (value >> 24) & 0xf;
      return;
    }
    if (index < kIndexFirstEntry || index >= kIndexFirstEntry + 2 * kPins) return;  // read-only or absent
    const unsigned pin = (index - kIndexFirstEntry) / 2;
    uint64_t& e = s_.entries[pin];
    const uint64_t old = e;
    const uint64_t written =
        (index & 1) ? (uint64_t{value} << 32) | (e & 0xffffffffull) : (e & 0xffffffff00000000ull) | value;
    e = (written & kEntryWritable) | (old & (kEntryRemoteIrr | kEntryDeliveryStatus));
    // Switching to edge trigger clears a stale remote IRR (guests use this
    // to recover a line whose EOI was lost).
    if (!(e & kEntryLevel)) e &= ~kEntryRemoteIrr;
    service_level_locked(pin);
  }

  ApicBus& bus_;
  mutable std::mutex mutex_;
  State s_;
};

IoApic::IoApic(ApicBus& bus, uint8_t id) : impl_(std::make_unique<Impl>(bus, id)) { reset(); }

IoApic::~IoApic() = default;

void IoApic::reset() {
  std::lock_guard lock(impl_->mutex_);
  impl_->reset_locked();
}

void IoApic::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(impl_->mutex_);
  if (offset == kRegSelect && !data.empty() && data.size() <= 4) {
    data[0] = impl_->s_.select;
  } else if (offset == kRegWindow && data.size() == 4) {
    const uint32_t v = impl_->read_window_locked();
    std::memcpy(data.data(), &v, 4);
  }
}

void IoApic::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(impl_->mutex_);
  if (offset == kRegSelect && !data.empty() && data.size() <= 4) {
    impl_->s_.select = data[0];
  } else if (offset == kRegWindow && data.size() == 4) {
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    impl_->write_window_locked(v);
  }
}

void IoApic::set_irq(unsigned pin, bool level) {
  if (pin >= kPins) return;
  std::lock_guard lock(impl_->mutex_);
  State& s = impl_->s_;
  const bool was = impl_->asserted(pin);
  if (level) {
    s.pin_levels |= 1u << pin;
  } else {
    s.pin_levels &= ~(1u << pin);
  }
  const uint64_t e = s.entries[pin];
  if (e & kEntryMasked) return;
  if (e & kEntryLevel) {
    impl_->service_level_locked(pin);
  } else if (level && !was) {
    impl_->deliver_locked(pin);
  }
}

void IoApic::eoi(uint8_t vector) {
  std::lock_guard lock(impl_->mutex_);
  for (unsigned pin = 0; pin < kPins; ++pin) {
    uint64_t& e = impl_->s_.entries[pin];
    if ((e & kEntryRemoteIrr) && (e & 0xff) == vector) {
      e &= ~kEntryRemoteIrr;
      impl_->service_level_locked(pin);  // still asserted: interrupt again
    }
  }
}

uint64_t IoApic::redirection_entry(unsigned pin) const {
  if (pin >= kPins) return 0;
  std::lock_guard lock(impl_->mutex_);
  return impl_->s_.entries[pin];
}

IoApic::State IoApic::save() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->s_;
}

void IoApic::restore(const State& state) {
  std::lock_guard lock(impl_->mutex_);
  impl_->s_ = state;
  impl_->s_.id &= 0xf;
  impl_->s_.pin_levels &= (1u << kPins) - 1;
  for (uint64_t& e : impl_->s_.entries) e &= kEntryWritable | kEntryRemoteIrr;
}

}  // namespace hostvisor::emu
