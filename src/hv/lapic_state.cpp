#include "hv/lapic_state.h"

#include <string>

namespace hostvisor {
namespace {

// IA32_APIC_BASE: BSP (8), x2APIC enable (10), global enable (11), base address (12-51).
constexpr uint64_t kApicBaseValidBits = (1ull << 8) | (1ull << 10) | (1ull << 11) | 0x000ffffffffff000ull;
constexpr uint64_t kApicBaseX2apic = 1ull << 10;
constexpr uint64_t kApicBaseEnable = 1ull << 11;
// An LVT register has no bits above 18 (timer mode).
constexpr uint32_t kLvtValidBits = 0x7ffff;
// Divide configuration: bits 0, 1 and 3.
constexpr uint32_t kTimerDivideBits = 0xb;

template <size_t N>
void put_words(StateWriter& out, const std::array<uint32_t, N>& words) {
  for (uint32_t w : words) out.put(w);
}

template <size_t N>
void get_words(StateReader& in, std::array<uint32_t, N>& words) {
  for (uint32_t& w : words) w = in.get<uint32_t>();
}

}  // namespace

void encode_local_apic_state(StateWriter& out, const LocalApicState& s) {
  out.put(s.apic_base);
  out.put(s.id);
  out.put(s.tpr);
  out.put(s.ldr);
  out.put(s.dfr);
  out.put(s.svr);
  out.put(s.esr);
  out.put(s.esr_pending);
  out.put(s.icr_low);
  out.put(s.icr_high);
  put_words(out, s.lvt);
  out.put(s.timer_initial);
  out.put(s.timer_divide);
  out.put(s.timer_elapsed_ns);
  out.put_bool(s.timer_running);
  out.put(s.tsc_deadline);
  put_words(out, s.irr);
  put_words(out, s.isr);
  put_words(out, s.tmr);
  out.put_bool(s.nmi_pending);
  out.put_bool(s.init_pending);
  out.put_bool(s.waiting_for_sipi);
  out.put_bool(s.sipi_pending);
  out.put(s.sipi_vector);
  out.put_bool(s.extint_pending);
  out.put_bool(s.lint0_level);
  out.put_bool(s.lint1_level);
}

LocalApicState decode_local_apic_state(StateReader& in) {
  LocalApicState s;
  s.apic_base = in.get<uint64_t>();
  s.id = in.get<uint32_t>();
  s.tpr = in.get<uint32_t>();
  s.ldr = in.get<uint32_t>();
  s.dfr = in.get<uint32_t>();
  s.svr = in.get<uint32_t>();
  s.esr = in.get<uint32_t>();
  s.esr_pending = in.get<uint32_t>();
  s.icr_low = in.get<uint32_t>();
  s.icr_high = in.get<uint32_t>();
  get_words(in, s.lvt);
  s.timer_initial = in.get<uint32_t>();
  s.timer_divide = in.get<uint32_t>();
  s.timer_elapsed_ns = in.get<uint64_t>();
  s.timer_running = in.get_bool();
  s.tsc_deadline = in.get<uint64_t>();
  get_words(in, s.irr);
  get_words(in, s.isr);
  get_words(in, s.tmr);
  s.nmi_pending = in.get_bool();
  s.init_pending = in.get_bool();
  s.waiting_for_sipi = in.get_bool();
  s.sipi_pending = in.get_bool();
  s.sipi_vector = in.get<uint8_t>();
  s.extint_pending = in.get_bool();
  s.lint0_level = in.get_bool();
  s.lint1_level = in.get_bool();

  if (s.apic_base & ~kApicBaseValidBits) in.fail("local APIC: IA32_APIC_BASE has reserved bits set");
  if ((s.apic_base & kApicBaseX2apic) && !(s.apic_base & kApicBaseEnable)) {
    in.fail("local APIC: x2APIC mode while the APIC is disabled");
  }
  if (s.tpr > 0xff) in.fail("local APIC: TPR out of range");
  for (uint32_t lvt : s.lvt) {
    if (lvt & ~kLvtValidBits) in.fail("local APIC: an LVT entry has reserved bits set");
  }
  if (s.timer_divide & ~kTimerDivideBits) in.fail("local APIC: timer divide configuration out of range");
  return s;
}

}  // namespace hostvisor
