#include "hv/kvm/kvm_exit.h"

#include <string>

#include "hv/hex.h"

namespace hostvisor::kvm {
namespace {

const char* internal_error_name(uint32_t suberror) {
  switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION: return "instruction emulation failed";
    case KVM_INTERNAL_ERROR_SIMUL_EX: return "exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV: return "exit while delivering an event";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected hardware exit reason";
    default: return "unknown internal error";
  }
}

VcpuExit port_io_exit(kvm_run& run, size_t run_size) {
  const auto& io = run.io;
  if (io.size != 1 && io.size != 2 && io.size != 4) {
    return FailureExit{"KVM_EXIT_IO with access size " + std::to_string(io.size)};
  }
  uint64_t length = uint64_t{io.size} * io.count;
  if (io.data_offset > run_size || length > run_size - io.data_offset) {
    return FailureExit{"KVM_EXIT_IO data (offset " + std::to_string(io.data_offset) + ", " + std::to_string(length) +
                       " bytes) lies outside the " + std::to_string(run_size) + "-byte kvm_run mapping"};
  }
  PortIoExit exit;
  exit.port = io.port;
  exit.size = io.size;
  exit.count = io.count;
  exit.is_write = io.direction == KVM_EXIT_IO_OUT;
  exit.data = std::span<uint8_t>(reinterpret_cast<uint8_t*>(&run) + io.data_offset, length);
  return exit;
}

VcpuExit mmio_exit(kvm_run& run) {
  auto& mmio = run.mmio;
  if (mmio.len == 0 || mmio.len > sizeof mmio.data) {
    return FailureExit{"KVM_EXIT_MMIO at " + hex(mmio.phys_addr) + " with length " + std::to_string(mmio.len)};
  }
  MmioExit exit;
  exit.address = mmio.phys_addr;
  exit.is_write = mmio.is_write != 0;
  exit.data = std::span<uint8_t>(mmio.data, mmio.len);
  return exit;
}

VcpuExit system_event_exit(const kvm_run& run) {
  switch (run.system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN: return SystemEventExit{SystemEventExit::Kind::kPowerOff};
    case KVM_SYSTEM_EVENT_RESET: return SystemEventExit{SystemEventExit::Kind::kReset};
    case KVM_SYSTEM_EVENT_CRASH: return FailureExit{"the guest reported a crash (KVM_SYSTEM_EVENT_CRASH)"};
    default: return FailureExit{"KVM_EXIT_SYSTEM_EVENT of unknown type " + std::to_string(run.system_event.type)};
  }
}

VcpuExit internal_error_exit(const kvm_run& run) {
  const auto& internal = run.internal;
  std::string detail = "KVM internal error, suberror " + std::to_string(internal.suberror) + " (" +
                       internal_error_name(internal.suberror) + ")";
  uint32_t ndata = internal.ndata;
  constexpr uint32_t kMaxData = sizeof internal.data / sizeof internal.data[0];
  if (ndata > kMaxData) ndata = kMaxData;
  if (ndata > 0) {
    detail += ", data:";
    for (uint32_t i = 0; i < ndata; ++i) detail += " " + hex(internal.data[i]);
  }
  return FailureExit{detail};
}

}  // namespace

const char* exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_IO: return "KVM_EXIT_IO";
    case KVM_EXIT_HYPERCALL: return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG: return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "KVM_EXIT_IRQ_WINDOW_OPEN";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTR: return "KVM_EXIT_INTR";
    case KVM_EXIT_SET_TPR: return "KVM_EXIT_SET_TPR";
    case KVM_EXIT_TPR_ACCESS: return "KVM_EXIT_TPR_ACCESS";
    case KVM_EXIT_NMI: return "KVM_EXIT_NMI";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "KVM_EXIT_SYSTEM_EVENT";
    case KVM_EXIT_IOAPIC_EOI: return "KVM_EXIT_IOAPIC_EOI";
    case KVM_EXIT_X86_RDMSR: return "KVM_EXIT_X86_RDMSR";
    case KVM_EXIT_X86_WRMSR: return "KVM_EXIT_X86_WRMSR";
    default: return "unknown KVM exit";
  }
}

VcpuExit translate_exit(kvm_run& run, size_t run_size) {
  switch (run.exit_reason) {
    case KVM_EXIT_IO: return port_io_exit(run, run_size);
    case KVM_EXIT_MMIO: return mmio_exit(run);
    case KVM_EXIT_HLT: return HaltExit{};
    case KVM_EXIT_SHUTDOWN: return SystemEventExit{SystemEventExit::Kind::kTripleFault};
    case KVM_EXIT_SYSTEM_EVENT: return system_event_exit(run);
    case KVM_EXIT_INTR: return InterruptedExit{};
    case KVM_EXIT_FAIL_ENTRY:
      return FailureExit{"KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY): hardware entry failure reason " +
                         hex(run.fail_entry.hardware_entry_failure_reason) + " on host CPU " +
                         std::to_string(run.fail_entry.cpu) + "; the vCPU state is invalid"};
    case KVM_EXIT_INTERNAL_ERROR: return internal_error_exit(run);
    case KVM_EXIT_UNKNOWN:
      return FailureExit{"KVM_EXIT_UNKNOWN: hardware exit reason " + hex(run.hw.hardware_exit_reason)};
    default:
      return FailureExit{"unexpected KVM exit " + std::to_string(run.exit_reason) + " (" +
                         exit_reason_name(run.exit_reason) + ")"};
  }
}

}  // namespace hostvisor::kvm
