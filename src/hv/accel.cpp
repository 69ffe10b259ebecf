#include "hv/accel.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "hv/emu/emu_hypervisor.h"
#include "hv/kvm/kvm_hypervisor.h"

namespace hostvisor {
namespace {

// Modules that provide /dev/kvm without hardware virtualization: they run the
// guest by emulating every instruction in the host kernel, which is far
// slower than our own software CPU running in user space.
constexpr std::array<const char*, 1> kSoftwareKvmModules = {"kvm_pvm"};

bool directory_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// True when a "flags" line of /proc/cpuinfo lists vmx or svm.
bool cpuinfo_has_vmx_or_svm(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (key != "flags") continue;
    std::istringstream flags(line.substr(colon + 1));
    std::string flag;
    while (flags >> flag) {
      if (flag == "vmx" || flag == "svm") return true;
    }
  }
  return false;
}

std::string dev_kvm_problem_text(const std::string& path, int err) {
  switch (err) {
    case ENOENT: return path + " does not exist (no KVM module loaded)";
    case EACCES:
    case EPERM:
      return path +
             ": permission denied — add yourself to the kvm group (sudo usermod -aG kvm $USER, then log in "
             "again)";
    default: return path + ": " + std::strerror(err);
  }
}

}  // namespace

Result<Accel> parse_accel(const std::string& name) {
  if (name == "auto") return Accel::kAuto;
  if (name == "kvm") return Accel::kKvm;
  if (name == "emu") return Accel::kEmu;
  return Error(ErrorCode::kInvalidArgument,
               "unknown accelerator '" + name + "': use auto (pick the best available), kvm or emu");
}

HostVirtualization probe_host_virtualization(const std::string& proc_cpuinfo, const std::string& sys_module,
                                             const std::string& dev_kvm) {
  HostVirtualization host;
  if (auto text = read_file(proc_cpuinfo); text.ok()) host.cpu_has_vmx_or_svm = cpuinfo_has_vmx_or_svm(*text);
  host.hardware_kvm_module = directory_exists(sys_module + "/kvm_intel") || directory_exists(sys_module + "/kvm_amd");
  for (const char* module : kSoftwareKvmModules) {
    if (directory_exists(sys_module + "/" + module)) {
      host.software_kvm_module = true;
      host.software_kvm_module_name = module;
      break;
    }
  }
  int fd = ::open(dev_kvm.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    host.dev_kvm_usable = true;
    ::close(fd);
  } else {
    host.dev_kvm_problem = dev_kvm_problem_text(dev_kvm, errno);
  }
  return host;
}

Result<AccelChoice> choose_accel(Accel requested, const HostVirtualization& host) {
  switch (requested) {
    case Accel::kEmu: return AccelChoice{Accel::kEmu, "software CPU requested with --accel emu"};
    case Accel::kKvm: {
      if (!host.dev_kvm_usable) {
        std::string problem = host.dev_kvm_problem.empty() ? "/dev/kvm is not usable" : host.dev_kvm_problem;
        return Error(ErrorCode::kUnsupported,
                     "--accel kvm: " + problem + "; use --accel auto or --accel emu to run on the software CPU");
      }
      if (host.software_kvm_module) {
        return AccelChoice{Accel::kKvm, "KVM requested with --accel kvm, but /dev/kvm is provided by " +
                                            host.software_kvm_module_name +
                                            ", which emulates every guest instruction in the host kernel: expect it "
                                            "to be very slow (--accel emu is usually faster)"};
      }
      return AccelChoice{Accel::kKvm, "KVM requested with --accel kvm"};
    }
    case Accel::kAuto: break;
  }
  if (host.software_kvm_module) {
    return AccelChoice{Accel::kEmu, "no hardware virtualization: /dev/kvm is provided by " +
                                        host.software_kvm_module_name +
                                        ", which emulates every guest instruction in the host kernel; using the "
                                        "software CPU"};
  }
  if (!host.cpu_has_vmx_or_svm) {
    return AccelChoice{Accel::kEmu,
                       "no hardware virtualization: the CPU flags list neither vmx (Intel VT-x) nor svm (AMD-V); "
                       "using the software CPU"};
  }
  if (!host.hardware_kvm_module) {
    return AccelChoice{Accel::kEmu,
                       "the CPU has VT-x/AMD-V but neither kvm_intel nor kvm_amd is loaded (modprobe one of them to "
                       "use KVM); using the software CPU"};
  }
  if (!host.dev_kvm_usable) {
    std::string problem = host.dev_kvm_problem.empty() ? "/dev/kvm is not usable" : host.dev_kvm_problem;
    return AccelChoice{Accel::kEmu, problem + "; using the software CPU"};
  }
  return AccelChoice{Accel::kKvm, "hardware virtualization (VT-x/AMD-V) through /dev/kvm"};
}

Result<std::unique_ptr<Hypervisor>> create_hypervisor(Accel accel) {
  switch (accel) {
    case Accel::kKvm: {
      auto kvm = HV_TRY(kvm::KvmHypervisor::open());
      return std::unique_ptr<Hypervisor>(std::move(kvm));
    }
    case Accel::kEmu: return emu::create_emu_hypervisor();
    case Accel::kAuto: break;
  }
  return Error(ErrorCode::kInternal, "create_hypervisor(auto): resolve the accelerator with choose_accel() first");
}

}  // namespace hostvisor
