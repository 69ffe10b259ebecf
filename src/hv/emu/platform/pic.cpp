#include "hv/emu/platform/pic.h"

#include <mutex>

namespace hostvisor::emu {

namespace {
constexpr unsigned kCascadeIrq = 2;
// Inputs that are always edge-triggered on a PC (timer, keyboard, cascade;
// RTC and FPU on the slave), so their ELCR bits are not writable.
constexpr uint8_t kElcrWritableMaster = 0xf8;
constexpr uint8_t kElcrWritableSlave = 0xde;
}  // namespace

class Pic::Impl {
 public:
  static constexpr unsigned kMaster = 0;
  static constexpr unsigned kSlave = 1;

  // Priority rank of `irq` (0 = highest) under the chip's rotation.
  static unsigned rank(const Chip& c, unsigned irq) { return (irq - c.priority_base) & 7; }

  // The highest-priority IRQ in `mask`, or -1.
  static int highest(const Chip& c, uint8_t mask) {
    for (unsigned i = 0; i < 8; ++i) {
      const unsigned irq = (c.priority_base + i) & 7;
      if (mask & (1u << irq)) return static_cast<int>(irq);
    }
    return -1;
  }

  // The request this chip would signal now, or -1: unmasked, and of higher
  // priority than everything in service (fully nested mode).
  int pending(unsigned chip) const {
    const Chip& c = s_.chips[chip];
    const int req = highest(c, c.irr & ~c.imr);
    if (req < 0) return -1;
    uint8_t in_service = c.isr;
    if (c.special_mask) in_service &= ~c.imr;  // masked levels do not block others
    // Special fully nested mode: more requests from the slave while one of
    // its interrupts is in service.
    if (chip == kMaster && c.special_fully_nested) in_service &= ~(1u << kCascadeIrq);
    const int cur = highest(c, in_service);
    if (cur >= 0 && rank(c, static_cast<unsigned>(cur)) <= rank(c, static_cast<unsigned>(req))) return -1;
    return req;
  }

  // Propagates the slave's INT to the master's IR2 and the master's INT to
  // the callback.
  void update_locked() {
    Chip& m = s_.chips[kMaster];
    if (!m.single) {
      if (pending(kSlave) >= 0) {
        m.irr |= 1u << kCascadeIrq;
      } else {
        m.irr &= ~(1u << kCascadeIrq);
      }
    }
    const bool level = pending(kMaster) >= 0;
    if (level != intr_) {
      intr_ = level;
      if (callback_) callback_(level);
    }
  }

  void set_line_locked(unsigned chip, unsigned bit, bool level) {
    Chip& c = s_.chips[chip];
    const uint8_t mask = static_cast<uint8_t>(1u << bit);
    const bool was = c.lines & mask;
    if (level) {
      c.lines |= mask;
    } else {
      c.lines &= ~mask;
    }
    if (c.elcr & mask) {
      // Level-sensitive: the request follows the line.
      if (level) {
        c.irr |= mask;
      } else {
        c.irr &= ~mask;
      }
    } else if (level && !was) {
      c.irr |= mask;  // edge latch; a falling edge leaves the request pending
    }
  }

  // Ends interrupt `irq` of `chip` (specific EOI) or, if irq < 0, the
  // highest-priority one in service (non-specific EOI). Returns the IRQ
  // ended, or -1.
  int end_of_interrupt(Chip& c, int irq) {
    if (irq < 0) irq = highest(c, c.isr);
    if (irq < 0) return -1;
    c.isr &= ~(1u << irq);
    return irq;
  }

  void write_command_locked(unsigned chip, uint8_t v) {
    Chip& c = s_.chips[chip];
    if (v & 0x10) {
      // ICW1: start initialisation. The edge detectors are reset, so a line
      // that is already high needs a new rising edge.
      c.icw4_needed = v & 0x01;
      c.single = v & 0x02;
      c.init_step = 2;
      c.imr = 0;
      c.isr = 0;
      c.irr = c.elcr & c.lines;
      c.priority_base = 0;
      c.special_mask = false;
      c.read_isr = false;
      c.poll = false;
      c.auto_eoi = false;
      c.rotate_on_auto_eoi = false;
      c.special_fully_nested = false;
      return;
    }
    if ((v & 0x18) == 0x08) {
      // OCW3.
      if (v & 0x40) c.special_mask = v & 0x20;
      if (v & 0x02) c.read_isr = v & 0x01;
      c.poll = v & 0x04;
      return;
    }
    if ((v & 0x18) != 0) return;  // not a valid OCW2 encoding
    // OCW2: R (bit 7), SL (bit 6), EOI (bit 5), level (bits 2:0).
    const unsigned level = v & 7;
    switch (v >> 5) {
      case 0b001: end_of_interrupt(c, -1); break;                       // non-specific EOI
      case 0b011: end_of_interrupt(c, static_cast<int>(level)); break;  // specific EOI
      case 0b101: {                                                     // rotate on non-specific EOI
        const int irq = end_of_interrupt(c, -1);
        if (irq >= 0) c.priority_base = static_cast<uint8_t>((irq + 1) & 7);
        break;
      }
      case 0b111:  // rotate on specific EOI
        end_of_interrupt(c, static_cast<int>(level));
        c.priority_base = static_cast<uint8_t>((level + 1) & 7);
        break;
      case 0b110: c.priority_base = static_cast<uint8_t>((level + 1) & 7); break;  // set priority
      case 0b100: c.rotate_on_auto_eoi = true; break;
      case 0b000: c.rotate_on_auto_eoi = false; break;
      default: break;  // 010: no operation
    }
  }

  void write_data_locked(unsigned chip, uint8_t v) {
    Chip& c = s_.chips[chip];
    switch (c.init_step) {
      case 2:
        c.vector_base = v & 0xf8;
        c.init_step = c.single ? (c.icw4_needed ? 4 : 0) : 3;
        return;
      case 3:
        c.cascade = v;
        c.init_step = c.icw4_needed ? 4 : 0;
        return;
      case 4:
        c.auto_eoi = v & 0x02;
        c.special_fully_nested = v & 0x10;
        c.init_step = 0;
        return;
      default: c.imr = v; return;  // OCW1
    }
  }

  // INTA on one chip for `irq`: IRR -> ISR (unless auto-EOI).
  uint8_t ack_irq_locked(unsigned chip, unsigned irq) {
    Chip& c = s_.chips[chip];
    const uint8_t mask = static_cast<uint8_t>(1u << irq);
    c.irr &= ~mask;
    if (c.elcr & c.lines & mask) c.irr |= mask;  // a level input still high requests again
    if (c.auto_eoi) {
      if (c.rotate_on_auto_eoi) c.priority_base = static_cast<uint8_t>((irq + 1) & 7);
    } else {
      c.isr |= mask;
    }
    return static_cast<uint8_t>(c.vector_base | irq);
  }

  uint8_t acknowledge_locked() {
    const int irq = pending(kMaster);
    if (irq < 0) return s_.chips[kMaster].vector_base | 7;  // spurious IRQ 7: no ISR bit
    if (static_cast<unsigned>(irq) != kCascadeIrq || s_.chips[kMaster].single) {
      return ack_irq_locked(kMaster, static_cast<unsigned>(irq));
    }
    ack_irq_locked(kMaster, kCascadeIrq);
    const int slave_irq = pending(kSlave);
    if (slave_irq < 0) return s_.chips[kSlave].vector_base | 7;  // spurious IRQ 15 (master's ISR2 is set)
    return ack_irq_locked(kSlave, static_cast<unsigned>(slave_irq));
  }

  // OCW3 poll: like an INTA but returns 0x80 | irq (or 0 with no request).
  uint8_t poll_locked(unsigned chip) {
    s_.chips[chip].poll = false;
    const int irq = pending(chip);
    if (irq < 0) return 0;
    ack_irq_locked(chip, static_cast<unsigned>(irq));
    return static_cast<uint8_t>(0x80 | irq);
  }

  mutable std::mutex mutex_;
  State s_;
  bool intr_ = false;
  std::function<void(bool)> callback_;
};

Pic::Pic() : impl_(std::make_unique<Impl>()) {}

Pic::~Pic() = default;

void Pic::reset() {
  std::lock_guard lock(impl_->mutex_);
  impl_->s_ = State{};
  impl_->update_locked();
}

uint8_t Pic::read_port(uint16_t port) {
  std::lock_guard lock(impl_->mutex_);
  State& s = impl_->s_;
  uint8_t v = 0xff;
  switch (port) {
    case kMasterCommand:
    case kSlaveCommand: {
      const unsigned chip = port == kMasterCommand ? Impl::kMaster : Impl::kSlave;
      const Chip& c = s.chips[chip];
      if (c.poll) {
        v = impl_->poll_locked(chip);
      } else {
        v = c.read_isr ? c.isr : c.irr;
      }
      break;
    }
    case kMasterData: v = s.chips[Impl::kMaster].imr; break;
    case kSlaveData: v = s.chips[Impl::kSlave].imr; break;
    case kElcrMaster: v = s.chips[Impl::kMaster].elcr; break;
    case kElcrSlave: v = s.chips[Impl::kSlave].elcr; break;
    default: return 0xff;
  }
  impl_->update_locked();
  return v;
}

void Pic::write_port(uint16_t port, uint8_t value) {
  std::lock_guard lock(impl_->mutex_);
  State& s = impl_->s_;
  switch (port) {
    case kMasterCommand: impl_->write_command_locked(Impl::kMaster, value); break;
    case kSlaveCommand: impl_->write_command_locked(Impl::kSlave, value); break;
    case kMasterData: impl_->write_data_locked(Impl::kMaster, value); break;
    case kSlaveData: impl_->write_data_locked(Impl::kSlave, value); break;
    case kElcrMaster: s.chips[Impl::kMaster].elcr = value & kElcrWritableMaster; break;
    case kElcrSlave: s.chips[Impl::kSlave].elcr = value & kElcrWritableSlave; break;
    default: return;
  }
  impl_->update_locked();
}

void Pic::set_irq(unsigned irq, bool level) {
  if (irq >= 16 || irq == kCascadeIrq) return;
  std::lock_guard lock(impl_->mutex_);
  impl_->set_line_locked(irq / 8, irq % 8, level);
  impl_->update_locked();
}

bool Pic::intr() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->pending(Impl::kMaster) >= 0;
}

uint8_t Pic::acknowledge() {
  std::lock_guard lock(impl_->mutex_);
  const uint8_t vector = impl_->acknowledge_locked();
  impl_->update_locked();
  return vector;
}

void Pic::set_intr_callback(std::function<void(bool level)> callback) {
  std::lock_guard lock(impl_->mutex_);
  impl_->callback_ = std::move(callback);
  if (impl_->callback_) impl_->callback_(impl_->intr_);
}

Pic::State Pic::save() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->s_;
}

void Pic::restore(const State& state) {
  std::lock_guard lock(impl_->mutex_);
  impl_->s_ = state;
  for (Chip& c : impl_->s_.chips) {
    c.vector_base &= 0xf8;
    c.priority_base &= 7;
    if (c.init_step == 1 || c.init_step > 4) c.init_step = 0;
  }
  impl_->s_.chips[Impl::kMaster].elcr &= kElcrWritableMaster;
  impl_->s_.chips[Impl::kSlave].elcr &= kElcrWritableSlave;
  impl_->update_locked();
}

}  // namespace hostvisor::emu
