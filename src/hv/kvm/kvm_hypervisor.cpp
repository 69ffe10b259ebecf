#include "hv/kvm/kvm_hypervisor.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "hv/kvm/kvm_abi.h"
#include "hv/kvm/kvm_ioctl.h"
#include "hv/kvm/kvm_vcpu_state.h"
#include "hv/kvm/kvm_vm.h"

namespace hostvisor::kvm {
namespace {

struct RequiredCapability {
  int cap;
  const char* name;
};

// Everything a VM of ours relies on; a KVM without one of these is too old.
constexpr RequiredCapability kRequired[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
};

Error open_error(const std::string& device, int err) {
  switch (err) {
    case ENOENT:
      return Error(ErrorCode::kNotFound,
                   device +
                       " does not exist: enable VT-x/AMD-V in the firmware and load kvm_intel or kvm_amd "
                       "(modprobe), or run with --accel emu");
    case EACCES:
    case EPERM:
      return Error(ErrorCode::kIo, device +
                                       ": permission denied — add yourself to the kvm group (sudo usermod -aG kvm "
                                       "$USER, then log in again), or run with --accel emu");
    default: return Error(ErrorCode::kIo, device + ": " + std::strerror(err));
  }
}

int check_extension(int kvm, int cap) {
  int r = kvm_ioctl(kvm, KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

// KVM_GET_SUPPORTED_CPUID fails with E2BIG until the buffer is big enough.
Result<std::vector<kvm_cpuid_entry2>> get_supported_cpuid(int kvm) {
  for (uint32_t capacity = 64; capacity <= 4096; capacity *= 2) {
    FlexibleArray<KvmCpuidHeader, kvm_cpuid_entry2> cpuid(capacity);
    cpuid.header()->nent = capacity;
    if (kvm_ioctl(kvm, kKvmGetSupportedCpuid, cpuid.data()) == 0) {
      return std::vector<kvm_cpuid_entry2>(cpuid.entries(), cpuid.entries() + cpuid.header()->nent);
    }
    if (errno != E2BIG) return Error::from_errno("KVM_GET_SUPPORTED_CPUID");
  }
  return Error(ErrorCode::kUnsupported, "KVM_GET_SUPPORTED_CPUID: more than 4096 CPUID entries");
}

Result<std::vector<uint32_t>> msr_index_list(int kvm) {
  KvmMsrListHeader probe{0};
  // The first call fails with E2BIG and says how many there are.
  if (kvm_ioctl(kvm, kKvmGetMsrIndexList, &probe) < 0 && errno != E2BIG) {
    return Error::from_errno("KVM_GET_MSR_INDEX_LIST");
  }
  FlexibleArray<KvmMsrListHeader, uint32_t> list(probe.nmsrs);
  list.header()->nmsrs = probe.nmsrs;
  if (kvm_ioctl(kvm, kKvmGetMsrIndexList, list.data()) < 0) return Error::from_errno("KVM_GET_MSR_INDEX_LIST");
  return std::vector<uint32_t>(list.entries(), list.entries() + list.header()->nmsrs);
}

// The MSRs of a vCPU state this KVM can read and write, in the state's order.
std::vector<uint32_t> state_msrs(const std::vector<uint32_t>& known) {
  auto has = [&](uint32_t index) { return std::find(known.begin(), known.end(), index) != known.end(); };
  std::vector<uint32_t> out;
  for (uint32_t index : saved_msr_indices()) {
    if (has(index)) out.push_back(index);
  }
  for (uint32_t index : {kMsrTsc, kMsrTscDeadline}) {
    if (has(index)) out.push_back(index);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<KvmHypervisor>> KvmHypervisor::open(const std::string& device) {
  int raw = ::open(device.c_str(), O_RDWR | O_CLOEXEC);
  if (raw < 0) return open_error(device, errno);
  UniqueFd kvm(raw);

  int version = kvm_ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return Error(ErrorCode::kUnsupported, device + ": KVM API version " + std::to_string(version) +
                                              ", hostvisor needs " + std::to_string(KVM_API_VERSION));
  }
  for (const auto& required : kRequired) {
    if (check_extension(kvm.get(), required.cap) <= 0) {
      return Error(ErrorCode::kUnsupported, device + ": this KVM lacks " + std::string(required.name) +
                                                " (the host kernel is too old); run with --accel emu");
    }
  }

  int mmap_size = kvm_ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < static_cast<int>(sizeof(kvm_run))) {
    return Error::from_errno(device + ": KVM_GET_VCPU_MMAP_SIZE");
  }

  KvmCapabilities caps;
  caps.max_vcpus = static_cast<unsigned>(check_extension(kvm.get(), KVM_CAP_MAX_VCPUS));
  // Documented fallbacks: NR_VCPUS when MAX_VCPUS is missing, 4 when both are.
  if (caps.max_vcpus == 0) caps.max_vcpus = static_cast<unsigned>(check_extension(kvm.get(), KVM_CAP_NR_VCPUS));
  if (caps.max_vcpus == 0) caps.max_vcpus = 4;
  caps.max_memory_slots = static_cast<unsigned>(check_extension(kvm.get(), KVM_CAP_NR_MEMSLOTS));
  if (caps.max_memory_slots == 0) caps.max_memory_slots = 32;
  caps.irqfd = check_extension(kvm.get(), KVM_CAP_IRQFD) > 0;
  caps.ioeventfd = check_extension(kvm.get(), KVM_CAP_IOEVENTFD) > 0;
  caps.ioeventfd_any_length = check_extension(kvm.get(), KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
  caps.signal_msi = check_extension(kvm.get(), KVM_CAP_SIGNAL_MSI) > 0;
  caps.irq_routing_entries = static_cast<unsigned>(check_extension(kvm.get(), KVM_CAP_IRQ_ROUTING));
  if (check_extension(kvm.get(), KVM_CAP_XSAVE) > 0) {
    const int xsave2 = check_extension(kvm.get(), KVM_CAP_XSAVE2);
    caps.xsave2 = xsave2 > static_cast<int>(sizeof(KvmXsave));
    caps.xsave_size = caps.xsave2 ? static_cast<size_t>(xsave2) : sizeof(KvmXsave);
  }
  caps.xcrs = check_extension(kvm.get(), KVM_CAP_XCRS) > 0;
  caps.tsc_control = check_extension(kvm.get(), KVM_CAP_TSC_CONTROL) > 0;
  caps.state_msrs = state_msrs(HV_TRY(msr_index_list(kvm.get())));

  auto cpuid = HV_TRY(get_supported_cpuid(kvm.get()));
  return std::unique_ptr<KvmHypervisor>(
      new KvmHypervisor(std::move(kvm), static_cast<size_t>(mmap_size), caps, std::move(cpuid)));
}

Result<std::unique_ptr<Vm>> KvmHypervisor::create_vm(const VmConfig& config) {
  if (config.vcpu_count == 0 || config.vcpu_count > caps_.max_vcpus) {
    return Error(ErrorCode::kInvalidArgument, "KVM: " + std::to_string(config.vcpu_count) +
                                                  " vCPUs requested; this host allows 1 to " +
                                                  std::to_string(caps_.max_vcpus));
  }
  auto vm = HV_TRY(KvmVm::create(kvm_.get(), config, caps_, supported_cpuid_, vcpu_mmap_size_));
  return std::unique_ptr<Vm>(std::move(vm));
}

}  // namespace hostvisor::kvm
