#include "hv/kvm/kvm_interrupt_controller.h"

#include <linux/kvm.h>

#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "hv/kvm/kvm_ioctl.h"

namespace hostvisor::kvm {

Result<void> KvmInterruptController::try_set_irq_line(uint32_t gsi, bool level) {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (kvm_ioctl(vm_fd_, KVM_IRQ_LINE, &irq) < 0) {
    return Error::from_errno("KVM_IRQ_LINE gsi " + std::to_string(gsi));
  }
  return ok();
}

Result<bool> KvmInterruptController::try_signal_msi(uint64_t address, uint32_t data) {
  if (!has_signal_msi_) return Error(ErrorCode::kUnsupported, "this KVM lacks KVM_CAP_SIGNAL_MSI");
  kvm_msi msi{};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(address >> 32);
  msi.data = data;
  int r = kvm_ioctl(vm_fd_, KVM_SIGNAL_MSI, &msi);
  if (r < 0) return Error::from_errno("KVM_SIGNAL_MSI");
  return r > 0;
}

void KvmInterruptController::set_irq_line(uint32_t gsi, bool level) {
  if (auto r = try_set_irq_line(gsi, level); !r.ok()) HV_LOG_WARN_LIMITED("{}", r.error().message());
}

void KvmInterruptController::signal_msi(uint64_t address, uint32_t data) {
  if (auto r = try_signal_msi(address, data); !r.ok()) HV_LOG_WARN_LIMITED("{}", r.error().message());
}

}  // namespace hostvisor::kvm
