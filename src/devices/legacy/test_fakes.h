// Test doubles for what the legacy devices talk to: an interrupt controller
// that records every line change and a SystemControl that counts requests.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "devices/system_control.h"
#include "hv/interrupts.h"

namespace hostvisor::testing {

class RecordingInterruptController : public InterruptController {
 public:
  void set_irq_line(uint32_t gsi, bool level) override {
    std::lock_guard lock(mutex_);
    calls_.emplace_back(gsi, level);
  }
  void signal_msi(uint64_t, uint32_t) override {}

  std::vector<std::pair<uint32_t, bool>> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    calls_.clear();
  }
  // The level last driven on `gsi` (false if never driven).
  bool level(uint32_t gsi) const {
    std::lock_guard lock(mutex_);
    for (auto it = calls_.rbegin(); it != calls_.rend(); ++it)
      if (it->first == gsi) return it->second;
    return false;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<uint32_t, bool>> calls_;
};

class RecordingSystemControl : public SystemControl {
 public:
  void request_exit(int status) override { exits.push_back(status); }
  void request_reset() override { ++resets; }
  void request_poweroff() override { ++poweroffs; }

  std::vector<int> exits;
  int resets = 0;
  int poweroffs = 0;
};

}  // namespace hostvisor::testing
