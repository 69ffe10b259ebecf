#include "sandbox/seccomp/seccomp_mode.h"

namespace hostvisor::sandbox {

Result<SeccompMode> parse_seccomp_mode(std::string_view text) {
  if (text == "kill") return SeccompMode::kKill;
  if (text == "log") return SeccompMode::kLog;
  if (text == "off") return SeccompMode::kOff;
  return Error(ErrorCode::kInvalidArgument, "--seccomp " + std::string(text) + ": must be kill, log or off");
}

const char* seccomp_mode_name(SeccompMode mode) {
  switch (mode) {
    case SeccompMode::kKill: return "kill";
    case SeccompMode::kLog: return "log";
    case SeccompMode::kOff: return "off";
  }
  return "kill";
}

SeccompMode default_seccomp_mode() { return SeccompMode::kKill; }

}  // namespace hostvisor::sandbox
