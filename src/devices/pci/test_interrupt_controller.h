// An InterruptController for tests: records every MSI and line change.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "hv/interrupts.h"

namespace hostvisor {

class RecordingInterruptController : public InterruptController {
 public:
  struct Msi {
    uint64_t address;
    uint32_t data;
    bool operator==(const Msi&) const = default;
  };
  void set_irq_line(uint32_t gsi, bool level) override {
    std::lock_guard lock(mutex_);
    lines[gsi] = level;
    line_events.push_back({gsi, level});
  }
  void signal_msi(uint64_t address, uint32_t data) override {
    std::lock_guard lock(mutex_);
    msis.push_back({address, data});
  }
  bool line(uint32_t gsi) const {
    auto it = lines.find(gsi);
    return it != lines.end() && it->second;
  }

  std::vector<Msi> msis;
  std::map<uint32_t, bool> lines;
  std::vector<std::pair<uint32_t, bool>> line_events;

 private:
  std::mutex mutex_;
};

}  // namespace hostvisor
