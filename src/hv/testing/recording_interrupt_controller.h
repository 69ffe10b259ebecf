// The one InterruptController of the tests: records every line change and
// every MSI, in order, so a test can assert what a device raised and when.
// Thread-safe: devices may signal from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "hv/interrupts.h"

namespace hostvisor::testing {

class RecordingInterruptController : public InterruptController {
 public:
  struct Msi {
    uint64_t address;
    uint32_t data;
    bool operator==(const Msi&) const = default;
  };
  using LineChange = std::pair<uint32_t, bool>;  // gsi, level

  void set_irq_line(uint32_t gsi, bool level) override {
    std::lock_guard lock(mutex_);
    calls_.emplace_back(gsi, level);
  }
  void signal_msi(uint64_t address, uint32_t data) override {
    std::lock_guard lock(mutex_);
    msis_.push_back({address, data});
  }

  // Every line change, oldest first.
  std::vector<LineChange> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  // Every MSI, oldest first.
  std::vector<Msi> msis() const {
    std::lock_guard lock(mutex_);
    return msis_;
  }
  // The level last driven on `gsi` (false if never driven).
  bool level(uint32_t gsi) const {
    std::lock_guard lock(mutex_);
    for (auto it = calls_.rbegin(); it != calls_.rend(); ++it)
      if (it->first == gsi) return it->second;
    return false;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    calls_.clear();
    msis_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<LineChange> calls_;
  std::vector<Msi> msis_;
};

}  // namespace hostvisor::testing
