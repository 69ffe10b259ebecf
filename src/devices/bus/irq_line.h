// A device's interrupt output wired to one GSI of the platform's interrupt
// controller. Tracks the level so the backend only hears about changes.
#pragma once

#include <atomic>
#include <cstdint>

#include "hv/interrupts.h"

namespace hostvisor {

class IrqLine {
 public:
  IrqLine() = default;
  IrqLine(InterruptController* controller, uint32_t gsi) : controller_(controller), gsi_(gsi) {}
  // Copyable so a device can take its line by value when it is built; the
  // copy starts at the source's current level. Copy before use, not while
  // another thread drives the source.
  IrqLine(const IrqLine& other) : controller_(other.controller_), gsi_(other.gsi_), level_(other.level_.load()) {}
  IrqLine& operator=(const IrqLine& other) {
    controller_ = other.controller_;
    gsi_ = other.gsi_;
    level_ = other.level_.load();
    return *this;
  }

  uint32_t gsi() const { return gsi_; }
  bool connected() const { return controller_ != nullptr; }

  // Level semantics: the line follows the device's "interrupt pending" state.
  void set_level(bool level) {
    if (!controller_) return;
    if (level_.exchange(level) != level) controller_->set_irq_line(gsi_, level);
  }
  // Edge semantics: one rising edge.
  void pulse() {
    if (!controller_) return;
    controller_->set_irq_line(gsi_, true);
    controller_->set_irq_line(gsi_, false);
    level_ = false;
  }

 private:
  InterruptController* controller_ = nullptr;
  uint32_t gsi_ = 0;
  std::atomic<bool> level_{false};
};

}  // namespace hostvisor
