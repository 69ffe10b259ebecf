#include "hv/kvm/kvm_vcpu.h"

#include <signal.h>
#include <sys/mman.h>

#include <cstring>
#include <string>

#include "hv/kvm/kvm_abi.h"
#include "hv/kvm/kvm_cpuid.h"
#include "hv/kvm/kvm_exit.h"
#include "hv/kvm/kvm_ioctl.h"
#include "hv/kvm/kvm_kick_signal.h"
#include "hv/kvm/kvm_registers.h"

namespace hostvisor::kvm {
namespace {

constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint64_t kMiscEnableFastStrings = 1ull << 0;

Result<void> set_cpuid(int fd, const std::vector<kvm_cpuid_entry2>& entries, const std::string& what) {
  FlexibleArray<KvmCpuidHeader, kvm_cpuid_entry2> cpuid(entries.size());
  cpuid.header()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(cpuid.entries(), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (kvm_ioctl(fd, kKvmSetCpuid2, cpuid.data()) < 0) return Error::from_errno(what + ": KVM_SET_CPUID2");
  return ok();
}

}  // namespace

Result<std::unique_ptr<KvmVcpu>> KvmVcpu::create(int vm_fd, unsigned index,
                                                 const std::vector<kvm_cpuid_entry2>& supported_cpuid,
                                                 size_t run_size) {
  std::string what = "vCPU " + std::to_string(index);
  int raw = kvm_ioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (raw < 0) return Error::from_errno(what + ": KVM_CREATE_VCPU");
  UniqueFd fd(raw);
  void* mapping = ::mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mapping == MAP_FAILED) return Error::from_errno(what + ": mmap of kvm_run");
  std::unique_ptr<KvmVcpu> vcpu(new KvmVcpu(std::move(fd), index, static_cast<kvm_run*>(mapping), run_size));

  // The APIC id equals the vCPU index (KVM_CREATE_VCPU's id is the APIC id).
  HV_TRY(set_cpuid(vcpu->fd(), vcpu_cpuid(supported_cpuid, index), what));
  // Fast strings: firmware sets it on real machines and Linux warns when a
  // CPU that has it comes up without it.
  HV_TRY(vcpu->set_msrs({{kMsrMiscEnable, kMiscEnableFastStrings}}));

  install_kick_handler();
  return vcpu;
}

KvmVcpu::~KvmVcpu() { ::munmap(run_, run_size_); }

std::string KvmVcpu::what(const char* ioctl_name) const { return "vCPU " + std::to_string(index_) + ": " + ioctl_name; }

Result<VcpuExit> KvmVcpu::run() {
  allow_kicks_on_this_thread();
  {
    std::lock_guard lock(running_mutex_);
    running_thread_ = pthread_self();
  }
  // Not kvm_ioctl(): EINTR here is a kick, not something to retry.
  int r = ::ioctl(fd_.get(), KVM_RUN, 0);
  int err = errno;
  {
    std::lock_guard lock(running_mutex_);
    running_thread_.reset();
  }
  if (r < 0) {
    if (err == EINTR || err == EAGAIN) {
      // This return is the kick's answer; the next run() goes into the guest.
      // KVM finished any PIO/MMIO the previous exit left pending before it
      // honoured immediate_exit or the signal (KVM API, kvm_run), so the
      // vCPU stands at an instruction boundary and its state is readable.
      __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
      return VcpuExit(InterruptedExit{});
    }
    return Error::from_errno(what("KVM_RUN"), err);
  }
  return translate_exit(*run_, run_size_);
}

// immediate_exit covers a kick that lands before KVM_RUN starts (KVM checks it
// on entry); the signal covers one that lands while the guest runs. Setting
// the flag first means no moment exists where neither would catch it.
void KvmVcpu::kick() {
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  std::lock_guard lock(running_mutex_);
  if (running_thread_) pthread_kill(*running_thread_, kick_signal());
}

Result<Registers> KvmVcpu::get_registers() {
  kvm_regs regs{};
  if (kvm_ioctl(fd_.get(), KVM_GET_REGS, &regs) < 0) return Error::from_errno(what("KVM_GET_REGS"));
  return from_kvm(regs);
}

Result<void> KvmVcpu::set_registers(const Registers& regs) {
  kvm_regs out = to_kvm(regs);
  if (kvm_ioctl(fd_.get(), KVM_SET_REGS, &out) < 0) return Error::from_errno(what("KVM_SET_REGS"));
  return ok();
}

Result<SystemRegisters> KvmVcpu::get_system_registers() {
  kvm_sregs sregs{};
  if (kvm_ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0) return Error::from_errno(what("KVM_GET_SREGS"));
  return from_kvm(sregs);
}

Result<void> KvmVcpu::set_system_registers(const SystemRegisters& sregs) {
  kvm_sregs out{};
  // Read first so what the neutral state does not carry (pending interrupts) survives.
  if (kvm_ioctl(fd_.get(), KVM_GET_SREGS, &out) < 0) return Error::from_errno(what("KVM_GET_SREGS"));
  to_kvm(sregs, out);
  if (kvm_ioctl(fd_.get(), KVM_SET_SREGS, &out) < 0) {
    int err = errno;
    if (err == EINVAL) {
      return Error(ErrorCode::kInvalidArgument,
                   what("KVM_SET_SREGS") +
                       ": KVM rejected the system registers as an invalid CPU state (check "
                       "CR0/CR4/EFER combinations and segment attributes)");
    }
    return Error::from_errno(what("KVM_SET_SREGS"), err);
  }
  return ok();
}

Result<void> KvmVcpu::set_msrs(const std::vector<Msr>& msrs) {
  if (msrs.empty()) return ok();
  FlexibleArray<KvmMsrsHeader, kvm_msr_entry> list(msrs.size());
  list.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    list.entries()[i].index = msrs[i].index;
    list.entries()[i].data = msrs[i].value;
  }
  int r = kvm_ioctl(fd_.get(), kKvmSetMsrs, list.data());
  if (r < 0) return Error::from_errno(what("KVM_SET_MSRS"));
  // KVM stops at the first MSR it refuses and returns how many it set.
  if (static_cast<size_t>(r) < msrs.size()) {
    char buffer[96];
    std::snprintf(buffer, sizeof buffer, "KVM refused MSR %#x = %#llx", msrs[r].index,
                  static_cast<unsigned long long>(msrs[r].value));
    return Error(ErrorCode::kInvalidArgument, what("KVM_SET_MSRS") + ": " + buffer);
  }
  return ok();
}

Result<std::vector<Msr>> KvmVcpu::get_msrs(const std::vector<uint32_t>& indices) {
  if (indices.empty()) return std::vector<Msr>{};
  FlexibleArray<KvmMsrsHeader, kvm_msr_entry> list(indices.size());
  list.header()->nmsrs = static_cast<uint32_t>(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) list.entries()[i].index = indices[i];
  int r = kvm_ioctl(fd_.get(), kKvmGetMsrs, list.data());
  if (r < 0) return Error::from_errno(what("KVM_GET_MSRS"));
  if (static_cast<size_t>(r) < indices.size()) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "KVM cannot read MSR %#x", indices[r]);
    return Error(ErrorCode::kInvalidArgument, what("KVM_GET_MSRS") + ": " + buffer);
  }
  std::vector<Msr> out(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) out[i] = {list.entries()[i].index, list.entries()[i].data};
  return out;
}

}  // namespace hostvisor::kvm
