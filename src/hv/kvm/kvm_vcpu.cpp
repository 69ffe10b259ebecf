#include "hv/kvm/kvm_vcpu.h"

#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <variant>

#include "base/log.h"
#include "hv/hex.h"
#include "hv/kvm/kvm_abi.h"
#include "hv/kvm/kvm_cpuid.h"
#include "hv/kvm/kvm_exit.h"
#include "hv/kvm/kvm_ioctl.h"
#include "hv/kvm/kvm_kick_signal.h"
#include "hv/kvm/kvm_registers.h"
#include "hv/kvm/kvm_vcpu_state.h"

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

// XCR0 bits KVM lets the guest enable: CPUID leaf 0xD, subleaf 0, EDX:EAX.
uint64_t supported_xcr0(const std::vector<kvm_cpuid_entry2>& cpuid) {
  for (const auto& entry : cpuid) {
    if (entry.function == 0xd && entry.index == 0) return entry.eax | (uint64_t{entry.edx} << 32);
  }
  return 0x3;  // no XSAVE: x87 and SSE
}

bool is_access_exit(const VcpuExit& exit) {
  return std::holds_alternative<PortIoExit>(exit) || std::holds_alternative<MmioExit>(exit);
}

}  // namespace

Result<std::unique_ptr<KvmVcpu>> KvmVcpu::create(int vm_fd, unsigned index, const KvmCapabilities& caps,
                                                 const std::vector<kvm_cpuid_entry2>& supported_cpuid,
                                                 size_t run_size) {
  std::string what = "vCPU " + std::to_string(index);
  int raw = kvm_ioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (raw < 0) return Error::from_errno(what + ": KVM_CREATE_VCPU");
  UniqueFd fd(raw);
  void* mapping = ::mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mapping == MAP_FAILED) return Error::from_errno(what + ": mmap of kvm_run");
  std::unique_ptr<KvmVcpu> vcpu(new KvmVcpu(std::move(fd), index, static_cast<kvm_run*>(mapping), run_size, caps,
                                            supported_xcr0(supported_cpuid)));

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
      access_pending_ = false;
      return VcpuExit(InterruptedExit{});
    }
    return Error::from_errno(what("KVM_RUN"), err);
  }
  auto exit = translate_exit(*run_, run_size_);
  access_pending_ = is_access_exit(exit);
  return exit;
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

Result<FpuState> KvmVcpu::get_fpu() {
  if (caps_.xsave_size == 0) {
    kvm_fpu fpu{};
    if (kvm_ioctl(fd_.get(), KVM_GET_FPU, &fpu) < 0) return Error::from_errno(what("KVM_GET_FPU"));
    return fpu_from_kvm(fpu);
  }
  std::vector<uint8_t> xsave(caps_.xsave_size);
  if (kvm_ioctl(fd_.get(), caps_.xsave2 ? kKvmGetXsave2 : kKvmGetXsave, xsave.data()) < 0) {
    return Error::from_errno(what(caps_.xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE"));
  }
  return fpu_from_xsave(xsave);
}

Result<void> KvmVcpu::set_fpu(const FpuState& fpu, uint64_t xcr0) {
  if (caps_.xsave_size == 0) {
    kvm_fpu out = fpu_to_kvm(fpu);
    if (kvm_ioctl(fd_.get(), KVM_SET_FPU, &out) < 0) return Error::from_errno(what("KVM_SET_FPU"));
    return ok();
  }
  // Read first: components the neutral state does not carry keep their value.
  std::vector<uint8_t> xsave(caps_.xsave_size);
  if (kvm_ioctl(fd_.get(), caps_.xsave2 ? kKvmGetXsave2 : kKvmGetXsave, xsave.data()) < 0) {
    return Error::from_errno(what(caps_.xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE"));
  }
  fpu_to_xsave(fpu, xcr0, xsave);
  if (kvm_ioctl(fd_.get(), kKvmSetXsave, xsave.data()) < 0) return Error::from_errno(what("KVM_SET_XSAVE"));
  return ok();
}

// Writing IA32_TSC is not enough: KVM takes a write within a second's worth
// of ticks of its last one for an attempt to synchronise vCPUs and, where the
// host TSC is unstable, moves the value on by the time since that write.
// The TSC offset attribute (Linux 5.16) sets the TSC exactly: the offset
// moves by what the TSC is missing. Some KVMs (kvm_pvm) accept both and
// still give the guest the host's TSC: that is checked by reading it back.
Result<void> KvmVcpu::set_tsc(uint64_t tsc) {
  auto off_by = [&]() -> Result<uint64_t> {
    const uint64_t now = HV_TRY(get_msrs({kMsrTsc})).front().value;
    return now > tsc ? now - tsc : tsc - now;
  };
  uint64_t offset = 0;
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<uint64_t>(&offset);
  if (kvm_ioctl(fd_.get(), KVM_HAS_DEVICE_ATTR, &attr) == 0) {
    if (kvm_ioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &attr) < 0) {
      return Error::from_errno(what("KVM_GET_DEVICE_ATTR TSC offset"));
    }
    const uint64_t now = HV_TRY(get_msrs({kMsrTsc})).front().value;
    offset += tsc - now;  // modulo 2^64, as the hardware adds it
    if (kvm_ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr) < 0) {
      return Error::from_errno(what("KVM_SET_DEVICE_ATTR TSC offset"));
    }
  } else {
    HV_TRY(set_msrs({{kMsrTsc, tsc}}));  // an older KVM: the MSR write, heuristic and all
  }
  // A millisecond of ticks covers the time the calls above took.
  const int khz = kvm_ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  tsc_settable_ = HV_TRY(off_by()) <= static_cast<uint64_t>(khz > 0 ? khz : 1'000'000);
  if (!tsc_settable_) {
    HV_LOG_WARN(
        "vCPU {}: this KVM does not let the guest's TSC be set (its guests read the host's TSC): the TSC "
        "continues from the host's, not from the saved value",
        index_);
  }
  return ok();
}

Result<VcpuState> KvmVcpu::save_state() {
  if (access_pending_) {
    return Error(ErrorCode::kBusy, "vCPU " + std::to_string(index_) +
                                       " is inside an I/O access: its state can be read only after kick() made "
                                       "run() return InterruptedExit (pause the machine first)");
  }
  VcpuState s;
  s.regs = HV_TRY(get_registers());
  s.sregs = HV_TRY(get_system_registers());
  s.fpu = HV_TRY(get_fpu());
  if (caps_.xcrs) {
    kvm_xcrs xcrs{};
    if (kvm_ioctl(fd_.get(), KVM_GET_XCRS, &xcrs) < 0) return Error::from_errno(what("KVM_GET_XCRS"));
    for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; ++i) {
      if (xcrs.xcrs[i].xcr == 0) s.xcr0 = xcrs.xcrs[i].value;
    }
  }

  uint64_t tsc_deadline = 0;
  for (const Msr& m : HV_TRY(get_msrs(caps_.state_msrs))) {
    if (m.index == kMsrTsc) {
      s.tsc = m.value;
    } else if (m.index == kMsrTscDeadline) {
      tsc_deadline = m.value;
    } else {
      s.msrs.push_back(m);
    }
  }
  const int khz = kvm_ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz > 0) s.tsc_khz = static_cast<uint32_t>(khz);

  kvm_vcpu_events events{};
  if (kvm_ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &events) < 0) return Error::from_errno(what("KVM_GET_VCPU_EVENTS"));
  s.events = events_from_kvm(events);
  kvm_lapic_state page{};
  if (kvm_ioctl(fd_.get(), KVM_GET_LAPIC, &page) < 0) return Error::from_errno(what("KVM_GET_LAPIC"));
  s.lapic = lapic_from_kvm(page, s.sregs.apic_base);
  s.lapic.tsc_deadline = tsc_deadline;
  s.lapic.nmi_pending = events.nmi.pending != 0;
  s.lapic.sipi_vector = static_cast<uint8_t>(events.sipi_vector);
  kvm_mp_state mp{};
  if (kvm_ioctl(fd_.get(), KVM_GET_MP_STATE, &mp) < 0) return Error::from_errno(what("KVM_GET_MP_STATE"));
  mp_state_from_kvm(mp.mp_state, s);
  return s;
}

Result<void> KvmVcpu::restore_state(const VcpuState& state) {
  const std::string who = "vCPU " + std::to_string(index_) + ": ";
  if (access_pending_) {
    return Error(ErrorCode::kBusy, who + "inside an I/O access: restore a state only into a paused or new vCPU");
  }
  HV_TRY(check_vcpu_state_index(state, index_));
  if (state.xcr0 & ~supported_xcr0_) {
    return Error(ErrorCode::kUnsupported, who + "the state uses XSAVE components (XCR0 = " + hex(state.xcr0) +
                                              ") that this host's KVM does not offer (it offers " +
                                              hex(supported_xcr0_) + ")");
  }
  auto before = save_state();
  if (auto applied = apply_state(state); !applied) {
    // Leave the vCPU as it was rather than half restored.
    if (before) (void)apply_state(*before);
    return applied.error().with_context("vCPU " + std::to_string(index_));
  }
  return ok();
}

Result<void> KvmVcpu::apply_state(const VcpuState& s) {
  // The system registers first: IA32_APIC_BASE decides how KVM reads the
  // LAPIC page. The pending-interrupt bitmap is cleared; the events below
  // say which interrupt was being delivered.
  kvm_sregs sregs{};
  if (kvm_ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0) return Error::from_errno(what("KVM_GET_SREGS"));
  to_kvm(s.sregs, sregs);
  std::memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
  if (kvm_ioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) {
    return Error::from_errno(what("KVM_SET_SREGS") + " (KVM rejected the system registers)");
  }
  HV_TRY(set_registers(s.regs));
  if (caps_.xcrs) {
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0] = {0, 0, s.xcr0};
    if (kvm_ioctl(fd_.get(), KVM_SET_XCRS, &xcrs) < 0) return Error::from_errno(what("KVM_SET_XCRS"));
  }
  HV_TRY(set_fpu(s.fpu, s.xcr0));

  // The TSC rate first, then the TSC: KVM converts the value at the new rate.
  const int khz = kvm_ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (s.tsc_khz != 0 && khz > 0 && static_cast<uint32_t>(khz) != s.tsc_khz) {
    if (!caps_.tsc_control || kvm_ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(s.tsc_khz)) < 0) {
      HV_LOG_WARN(
          "vCPU {}: the guest's TSC ran at {} kHz and goes on at {} kHz (this KVM cannot scale the TSC); a "
          "guest timing itself by the TSC sees its clock run at another rate",
          index_, s.tsc_khz, khz);
    }
  }
  std::vector<Msr> msrs;
  auto known = [&](uint32_t index) {
    return std::find(caps_.state_msrs.begin(), caps_.state_msrs.end(), index) != caps_.state_msrs.end();
  };
  for (const Msr& m : s.msrs) {
    if (known(m.index)) {
      msrs.push_back(m);
    } else if (m.value != 0) {
      return Error(ErrorCode::kUnsupported, "the state sets MSR " + hex(m.index) + ", which this host's KVM lacks");
    }
  }
  HV_TRY(set_msrs(msrs));
  HV_TRY(set_tsc(s.tsc));

  kvm_lapic_state page{};
  if (kvm_ioctl(fd_.get(), KVM_GET_LAPIC, &page) < 0) return Error::from_errno(what("KVM_GET_LAPIC"));
  lapic_to_kvm(s.lapic, page);
  if (kvm_ioctl(fd_.get(), KVM_SET_LAPIC, &page) < 0) return Error::from_errno(what("KVM_SET_LAPIC"));
  // After the LAPIC: KVM arms the deadline only in TSC-deadline mode.
  if (known(kMsrTscDeadline)) HV_TRY(set_msrs({{kMsrTscDeadline, s.lapic.tsc_deadline}}));

  kvm_vcpu_events events = events_to_kvm(s.events, s.lapic);
  if (kvm_ioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &events) < 0) return Error::from_errno(what("KVM_SET_VCPU_EVENTS"));
  kvm_mp_state mp{mp_state_to_kvm(s)};
  if (kvm_ioctl(fd_.get(), KVM_SET_MP_STATE, &mp) < 0) return Error::from_errno(what("KVM_SET_MP_STATE"));
  return ok();
}

}  // namespace hostvisor::kvm
