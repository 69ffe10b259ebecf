// Choosing a CPU backend: --accel auto|kvm|emu.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "hv/hypervisor.h"

namespace hostvisor {

enum class Accel { kAuto, kKvm, kEmu };

Result<Accel> parse_accel(const std::string& name);

// What the host offers, read from /proc/cpuinfo, /sys/module and /dev/kvm.
// The paths are parameters so tests can feed a fake host.
struct HostVirtualization {
  bool cpu_has_vmx_or_svm = false;       // "vmx" or "svm" in the CPU flags
  bool hardware_kvm_module = false;      // kvm_intel or kvm_amd loaded
  bool software_kvm_module = false;      // a module that emulates every instruction (kvm_pvm)
  bool dev_kvm_usable = false;           // /dev/kvm opens read/write
  std::string software_kvm_module_name;  // which one, when software_kvm_module
  std::string dev_kvm_problem;           // why /dev/kvm is not usable (for messages)
};
HostVirtualization probe_host_virtualization(const std::string& proc_cpuinfo = "/proc/cpuinfo",
                                             const std::string& sys_module = "/sys/module",
                                             const std::string& dev_kvm = "/dev/kvm");

struct AccelChoice {
  Accel accel = Accel::kEmu;  // kKvm or kEmu, never kAuto
  std::string reason;         // one line: why this backend (for auto)
};

// Resolves `requested` against the host. An explicit kvm on a host without a
// usable /dev/kvm is an error; auto falls back to emu and says why.
Result<AccelChoice> choose_accel(Accel requested, const HostVirtualization& host);

// Makes the chosen backend.
Result<std::unique_ptr<Hypervisor>> create_hypervisor(Accel accel);

}  // namespace hostvisor
