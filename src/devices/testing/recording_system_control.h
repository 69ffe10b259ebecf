// The SystemControl of the device tests: counts what the devices ask of the
// machine (exit with a status, reset, power off) instead of doing it.
#pragma once

#include <vector>

#include "devices/system_control.h"

namespace hostvisor::testing {

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
