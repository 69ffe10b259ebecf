// How a run of a guest ended, and the exit status hostvisor reports for it.
#pragma once

#include <string>

namespace hostvisor {

struct RunOutcome {
  enum class Kind {
    kPowerOff,     // the guest powered off: status 0
    kUserQuit,     // Ctrl-A x, SIGINT/SIGTERM/SIGHUP: status 0
    kDebugExit,    // the guest wrote v to the debug-exit port: status (v << 1) | 1
    kReset,        // the guest reset the machine: hostvisor reboots it, or with --no-reboot ends with status 3
    kTripleFault,  // the guest shut its CPU down: status 4
    kGuestStuck,   // a vCPU halted with nothing that could ever wake it: status 4
    kFailure,      // hostvisor could not go on: status 1
  };
  Kind kind = Kind::kFailure;
  int exit_status = 1;
  std::string message;  // one line for the user; empty for a clean power-off

  // The guest's own endings, whether a device or the backend saw them.
  static RunOutcome power_off() { return RunOutcome{Kind::kPowerOff, 0, ""}; }
  static RunOutcome reset() { return RunOutcome{Kind::kReset, 3, "the guest reset the machine; ending the run"}; }
};

}  // namespace hostvisor
