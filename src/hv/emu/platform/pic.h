// Two cascaded Intel 8259A programmable interrupt controllers, as on a PC:
// the master at ports 0x20/0x21 handles IRQ 0-7, the slave at 0xA0/0xA1 IRQ
// 8-15 and signals the master on its IRQ 2. The edge/level control registers
// (ELCR, ports 0x4D0/0x4D1, one bit per IRQ; IRQ 0, 1, 2, 8 and 13 are
// always edge) select level-triggered input per IRQ.
//
// Supported: ICW1-ICW4 (single/cascade, ICW4 needed or not, auto-EOI; the
// 8080 mode, buffered mode and level bit of ICW1 are accepted and ignored,
// the ELCR decides triggering), OCW1 (IMR), OCW2 (non-specific and specific
// EOI, rotate on EOI, set priority), OCW3 (read IRR/ISR, poll, special mask
// mode), special fully nested mode on the master.
//
// The master's INT output feeds LINT0 of vCPU 0's local APIC (ExtINT); the
// CPU's interrupt acknowledge cycle is acknowledge(). A request that went
// away between INT and INTA yields the spurious vector of IRQ 7 (or IRQ 15
// on the slave) without setting an ISR bit, as the 8259A does.
//
// Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "hv/irqchip_state.h"

namespace hostvisor::emu {

class Pic {
 public:
  static constexpr uint16_t kMasterCommand = 0x20;
  static constexpr uint16_t kMasterData = 0x21;
  static constexpr uint16_t kSlaveCommand = 0xa0;
  static constexpr uint16_t kSlaveData = 0xa1;
  static constexpr uint16_t kElcrMaster = 0x4d0;
  static constexpr uint16_t kElcrSlave = 0x4d1;

  Pic();
  ~Pic();
  Pic(const Pic&) = delete;
  Pic& operator=(const Pic&) = delete;

  void reset();  // power-on: uninitialised, IMR clear, ELCR clear

  // Port accesses (one byte) for the six ports above; other ports read 0xFF.
  uint8_t read_port(uint16_t port);
  void write_port(uint16_t port, uint8_t value);

  // Drives IRQ line `irq` (0-15; 2 is the cascade input and is ignored).
  void set_irq(unsigned irq, bool level);

  // The master's INT output.
  bool intr() const;
  // Interrupt acknowledge cycle: returns the vector of the highest-priority
  // request and moves it IRR -> ISR (or ends it, in auto-EOI mode).
  uint8_t acknowledge();

  // Called with the new INT level whenever it changes. It runs with the
  // PIC's lock held, so levels arrive in order; it must not call back into
  // the Pic (LocalApic::set_lint0 does not: LAPICs never call out while
  // locked, and ask the PIC for vectors only without their lock).
  void set_intr_callback(std::function<void(bool level)> callback);

  using Chip = PicChipState;  // hv/irqchip_state.h
  using State = PicState;
  State save() const;
  void restore(const State& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::emu
