#include "hv/kvm/kvm_irqchip_state.h"

#include <algorithm>

namespace hostvisor::kvm {
namespace {

constexpr uint64_t kIoApicBase = 0xfec00000;
constexpr uint64_t kIoApicDeliveryStatus = 1ull << 12;
// The 8259's ICW3 on a PC: the slave on the master's IRQ 2.
constexpr uint8_t kMasterCascade = 0x04, kSlaveId = 0x02;
// The 8254 input clock.
constexpr uint64_t kPitHz = 1'193'182;
constexpr uint64_t kNsPerSecond = 1'000'000'000;
// KVM's i8254 read/write phases (arch/x86/kvm/i8254.c).
constexpr uint8_t kRwWord0 = 3, kRwWord1 = 4;  // 1 and 2 are the single-byte modes

// The phase of a two-byte access, or the single byte's access mode.
uint8_t phase(uint8_t access, bool high_next) {
  if (access != 3) return access;
  return high_next ? kRwWord1 : kRwWord0;
}

}  // namespace

PicChipState pic_from_kvm(const kvm_pic_state& k, bool master) {
  PicChipState c;
  c.irr = k.irr;
  c.isr = k.isr;
  c.imr = k.imr;
  c.elcr = k.elcr;
  c.lines = k.last_irr;
  c.vector_base = k.irq_base & 0xf8;
  c.priority_base = k.priority_add & 7;
  c.init_step = k.init_state == 0 || k.init_state > 3 ? 0 : k.init_state + 1;  // KVM: 1-3 wait for ICW2-ICW4
  c.icw4_needed = k.init4;
  c.auto_eoi = k.auto_eoi;
  c.rotate_on_auto_eoi = k.rotate_on_auto_eoi;
  c.special_fully_nested = k.special_fully_nested_mode;
  c.special_mask = k.special_mask;
  c.read_isr = k.read_reg_select;
  c.poll = k.poll;
  c.cascade = master ? kMasterCascade : kSlaveId;
  return c;
}

void pic_to_kvm(const PicChipState& c, kvm_pic_state& k) {
  k.irr = c.irr;
  k.isr = c.isr;
  k.imr = c.imr;
  k.elcr = c.elcr & k.elcr_mask;
  k.last_irr = c.lines;
  k.irq_base = c.vector_base;
  k.priority_add = c.priority_base;
  k.init_state = c.init_step == 0 ? 0 : c.init_step - 1;
  k.init4 = c.icw4_needed;
  k.auto_eoi = c.auto_eoi;
  k.rotate_on_auto_eoi = c.rotate_on_auto_eoi;
  k.special_fully_nested_mode = c.special_fully_nested;
  k.special_mask = c.special_mask;
  k.read_reg_select = c.read_isr;
  k.poll = c.poll;
}

IoApicState ioapic_from_kvm(const kvm_ioapic_state& k) {
  IoApicState s;
  s.id = static_cast<uint8_t>(k.id & 0xf);
  s.select = static_cast<uint8_t>(k.ioregsel);
  for (unsigned pin = 0; pin < IoApicState::kPins; ++pin)
    s.entries[pin] = k.redirtbl[pin].bits & ~kIoApicDeliveryStatus;
  s.pin_levels = k.irr & ((1u << IoApicState::kPins) - 1);
  return s;
}

void ioapic_to_kvm(const IoApicState& s, kvm_ioapic_state& k) {
  k.base_address = kIoApicBase;
  k.ioregsel = s.select;
  k.id = s.id;
  k.irr = s.pin_levels;
  for (unsigned pin = 0; pin < IoApicState::kPins; ++pin) k.redirtbl[pin].bits = s.entries[pin];
}

PitState pit_from_kvm(const kvm_pit_state2& k, int64_t now_ns) {
  PitState s;
  for (unsigned ch = 0; ch < 3; ++ch) {
    const kvm_pit_channel_state& kc = k.channels[ch];
    PitChannelState& c = s.channels[ch];
    // KVM resets a channel to mode 0xff: never programmed.
    c.counting = kc.mode <= 5;
    c.mode = kc.mode <= 5 ? kc.mode : 0;
    c.access = kc.rw_mode >= 1 && kc.rw_mode <= 3 ? kc.rw_mode : 3;
    c.bcd = kc.bcd;
    c.gate = kc.gate;
    c.count = kc.count == 0 || kc.count > 0x10000 ? 0x10000 : kc.count;
    c.armed = false;  // KVM counts modes 1 and 5 from their load or trigger alike
    // (A channel never programmed has no load time: KVM reports 0.)
    const uint64_t elapsed_ns =
        c.counting && now_ns > kc.count_load_time ? static_cast<uint64_t>(now_ns - kc.count_load_time) : 0;
    c.elapsed_ticks = static_cast<uint64_t>(static_cast<unsigned __int128>(elapsed_ns) * kPitHz / kNsPerSecond);
    c.write_high_next = kc.write_state == kRwWord1;
    c.write_low = kc.write_latch;
    c.read_high_next = kc.read_state == kRwWord1;
    c.null_count = false;
    c.latched = kc.count_latched != 0;
    c.latched_value = kc.latched_count;
    c.latched_high_next = kc.count_latched == kRwWord1;
    c.status_latched = kc.status_latched;
    c.status = kc.status;
  }
  s.port61 = (s.channels[2].gate ? 0x1 : 0) | (k.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON ? 0x2 : 0);
  return s;
}

kvm_pit_state2 pit_to_kvm(const PitState& s, int64_t now_ns) {
  kvm_pit_state2 k{};
  for (unsigned ch = 0; ch < 3; ++ch) {
    const PitChannelState& c = s.channels[ch];
    kvm_pit_channel_state& kc = k.channels[ch];
    kc.count = c.count;
    kc.latched_count = c.latched_value;
    kc.count_latched = c.latched ? phase(c.access, c.latched_high_next) : 0;
    kc.status_latched = c.status_latched;
    kc.status = c.status;
    kc.read_state = phase(c.access, c.read_high_next);
    kc.write_state = phase(c.access, c.write_high_next);
    kc.write_latch = c.write_low;
    kc.rw_mode = c.access;
    kc.mode = c.counting ? c.mode : 0xff;
    kc.bcd = c.bcd;
    kc.gate = c.gate;
    // KVM_SET_PIT2 reloads the count at "now" whatever this says; it is
    // filled in for a KVM that one day keeps it.
    const uint64_t elapsed_ns =
        static_cast<uint64_t>(static_cast<unsigned __int128>(c.elapsed_ticks) * kNsPerSecond / kPitHz);
    kc.count_load_time = now_ns - static_cast<int64_t>(std::min<uint64_t>(elapsed_ns, INT64_MAX / 2));
  }
  k.channels[2].gate = s.port61 & 0x1;
  k.flags = s.port61 & 0x2 ? KVM_PIT_FLAGS_SPEAKER_DATA_ON : 0;
  return k;
}

}  // namespace hostvisor::kvm
