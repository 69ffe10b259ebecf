#include "hv/irqchip_state.h"

#include <string>

namespace hostvisor {
namespace {

// Redirection entry bits a guest can set, plus remote IRR: vector, delivery
// mode, destination mode, polarity, remote IRR, trigger, mask, destination.
constexpr uint64_t kIoApicEntryBits = 0xff000000'0001efffull;
// xAPIC ids 0-254 (255 is broadcast).
constexpr uint32_t kMaxVcpus = 255;

void encode_pic_chip(StateWriter& out, const PicChipState& c) {
  out.put(c.irr);
  out.put(c.isr);
  out.put(c.imr);
  out.put(c.elcr);
  out.put(c.lines);
  out.put(c.vector_base);
  out.put(c.priority_base);
  out.put(c.init_step);
  out.put_bool(c.icw4_needed);
  out.put_bool(c.single);
  out.put_bool(c.auto_eoi);
  out.put_bool(c.rotate_on_auto_eoi);
  out.put_bool(c.special_fully_nested);
  out.put_bool(c.special_mask);
  out.put_bool(c.read_isr);
  out.put_bool(c.poll);
  out.put(c.cascade);
}

PicChipState decode_pic_chip(StateReader& in) {
  PicChipState c;
  c.irr = in.get<uint8_t>();
  c.isr = in.get<uint8_t>();
  c.imr = in.get<uint8_t>();
  c.elcr = in.get<uint8_t>();
  c.lines = in.get<uint8_t>();
  c.vector_base = in.get<uint8_t>();
  c.priority_base = in.get<uint8_t>();
  c.init_step = in.get<uint8_t>();
  c.icw4_needed = in.get_bool();
  c.single = in.get_bool();
  c.auto_eoi = in.get_bool();
  c.rotate_on_auto_eoi = in.get_bool();
  c.special_fully_nested = in.get_bool();
  c.special_mask = in.get_bool();
  c.read_isr = in.get_bool();
  c.poll = in.get_bool();
  c.cascade = in.get<uint8_t>();
  if (c.vector_base & 7) in.fail("PIC: vector base is not a multiple of 8");
  if (c.priority_base > 7) in.fail("PIC: priority base out of range");
  if (c.init_step == 1 || c.init_step > 4) in.fail("PIC: initialisation step out of range");
  return c;
}

void encode_pit_channel(StateWriter& out, const PitChannelState& c) {
  out.put(c.mode);
  out.put(c.access);
  out.put_bool(c.bcd);
  out.put_bool(c.gate);
  out.put(c.count);
  out.put_bool(c.counting);
  out.put_bool(c.armed);
  out.put(c.elapsed_ticks);
  out.put_bool(c.write_high_next);
  out.put(c.write_low);
  out.put_bool(c.read_high_next);
  out.put_bool(c.null_count);
  out.put_bool(c.latched);
  out.put(c.latched_value);
  out.put_bool(c.latched_high_next);
  out.put_bool(c.status_latched);
  out.put(c.status);
}

PitChannelState decode_pit_channel(StateReader& in) {
  PitChannelState c;
  c.mode = in.get<uint8_t>();
  c.access = in.get<uint8_t>();
  c.bcd = in.get_bool();
  c.gate = in.get_bool();
  c.count = in.get<uint32_t>();
  c.counting = in.get_bool();
  c.armed = in.get_bool();
  c.elapsed_ticks = in.get<uint64_t>();
  c.write_high_next = in.get_bool();
  c.write_low = in.get<uint8_t>();
  c.read_high_next = in.get_bool();
  c.null_count = in.get_bool();
  c.latched = in.get_bool();
  c.latched_value = in.get<uint16_t>();
  c.latched_high_next = in.get_bool();
  c.status_latched = in.get_bool();
  c.status = in.get<uint8_t>();
  if (c.mode > 5) in.fail("PIT: counter mode " + std::to_string(c.mode) + " out of range 0-5");
  if (c.access < 1 || c.access > 3) in.fail("PIT: access mode out of range 1-3");
  if (c.count == 0 || c.count > 0x10000) in.fail("PIT: reload value out of range 1-65536");
  return c;
}

}  // namespace

Result<void> check_irqchip_vcpu_count(const IrqchipState& state, unsigned vcpu_count) {
  if (state.vcpu_count == vcpu_count) return {};
  return Error(ErrorCode::kInvalidArgument, "the saved VM had " + std::to_string(state.vcpu_count) +
                                                " vCPUs and this one has " + std::to_string(vcpu_count) +
                                                "; restore with --cpus " + std::to_string(state.vcpu_count));
}

void encode_irqchip_state(StateWriter& out, const IrqchipState& s) {
  out.put(s.io_apic.id);
  out.put(s.io_apic.select);
  for (uint64_t e : s.io_apic.entries) out.put(e);
  out.put(s.io_apic.pin_levels);
  for (const PicChipState& c : s.pic.chips) encode_pic_chip(out, c);
  for (const PitChannelState& c : s.pit.channels) encode_pit_channel(out, c);
  out.put(s.pit.port61);
  out.put(s.clock_ns);
  out.put(s.vcpu_count);
}

Result<IrqchipState> decode_irqchip_state(std::span<const uint8_t> payload, uint32_t version) {
  if (version != kIrqchipStateVersion) {
    return Error(ErrorCode::kUnsupported, "interrupt controller state version " + std::to_string(version) +
                                              " is not known to this hostvisor (it reads version " +
                                              std::to_string(kIrqchipStateVersion) + ")");
  }
  StateReader in(payload, "interrupt controller state");
  IrqchipState s;
  s.io_apic.id = in.get<uint8_t>();
  s.io_apic.select = in.get<uint8_t>();
  for (uint64_t& e : s.io_apic.entries) e = in.get<uint64_t>();
  s.io_apic.pin_levels = in.get<uint32_t>();
  for (PicChipState& c : s.pic.chips) c = decode_pic_chip(in);
  for (PitChannelState& c : s.pit.channels) c = decode_pit_channel(in);
  s.pit.port61 = in.get<uint8_t>();
  s.clock_ns = in.get<uint64_t>();
  s.vcpu_count = in.get<uint32_t>();

  if (s.io_apic.id > 0xf) in.fail("IOAPIC: id out of range 0-15");
  for (uint64_t e : s.io_apic.entries) {
    if (e & ~kIoApicEntryBits) in.fail("IOAPIC: a redirection entry has reserved bits set");
  }
  if (s.io_apic.pin_levels >> IoApicState::kPins) in.fail("IOAPIC: a pin level beyond pin 23");
  if (s.pit.port61 & ~0x0f) in.fail("port 0x61: bits beyond the writable 0-3");
  if (s.vcpu_count == 0 || s.vcpu_count > kMaxVcpus) in.fail("vCPU count out of range 1-" + std::to_string(kMaxVcpus));
  HV_TRY(in.finish());
  return s;
}

}  // namespace hostvisor
