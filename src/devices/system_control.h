// What a device may ask of the machine it sits in: end the run with a status
// (debug-exit), reset, or power off (i8042 reset line, ACPI). Implemented by
// the VMM; devices never see the Machine itself.
#pragma once

namespace hostvisor {

class SystemControl {
 public:
  virtual ~SystemControl() = default;
  virtual void request_exit(int status) = 0;  // leave hostvisor with this exit status
  virtual void request_reset() = 0;
  virtual void request_poweroff() = 0;
};

}  // namespace hostvisor
