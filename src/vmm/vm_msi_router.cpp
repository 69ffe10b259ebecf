#include "vmm/vm_msi_router.h"

#include <sys/eventfd.h>

#include <string>

namespace hostvisor {

class VmMsiRouter::Route final : public MsiRoute {
 public:
  Route(VmMsiRouter& router, uint32_t gsi, EventFd event) : router_(router), gsi_(gsi), event_(std::move(event)) {}
  ~Route() override {
    // Unhook the irqfd before the routing entry and the GSI go, so the GSI
    // can be handed out again with nothing still attached to it.
    (void)router_.vm_.unregister_irqfd(event_, gsi_);
    (void)router_.vm_.remove_msi_route(gsi_);
    router_.release_gsi(gsi_);
  }
  void fire() override { event_.signal(); }
  Result<void> retarget(uint64_t address, uint32_t data) override {
    // The irqfd follows its GSI's routing entry: replacing the entry is enough.
    return router_.vm_.set_msi_route(gsi_, address, data);
  }

 private:
  VmMsiRouter& router_;
  uint32_t gsi_;
  EventFd event_;
};

VmMsiRouter::VmMsiRouter(Vm& vm) : vm_(vm), range_(vm.msi_route_gsis()), next_gsi_(range_.first) {}

bool VmMsiRouter::supported(const Vm& vm) {
  const Vm::GsiRange range = vm.msi_route_gsis();
  return vm.supports_fast_eventfds() && range.end > range.first;
}

Result<uint32_t> VmMsiRouter::allocate_gsi() {
  std::lock_guard lock(mutex_);
  uint32_t gsi;
  if (!free_gsis_.empty()) {
    gsi = free_gsis_.back();
    free_gsis_.pop_back();
  } else if (next_gsi_ < range_.end) {
    gsi = next_gsi_++;
  } else {
    return Error(ErrorCode::kOutOfRange, "every GSI for MSI routes (" + std::to_string(range_.first) + " to " +
                                             std::to_string(range_.end - 1) + ") is in use");
  }
  ++in_use_;
  return gsi;
}

void VmMsiRouter::release_gsi(uint32_t gsi) {
  std::lock_guard lock(mutex_);
  free_gsis_.push_back(gsi);
  --in_use_;
}

size_t VmMsiRouter::gsis_in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

Result<std::unique_ptr<MsiRoute>> VmMsiRouter::create_route(uint64_t address, uint32_t data) {
  if (!supported(vm_)) return Error(ErrorCode::kUnsupported, "this CPU backend has no irqfd/MSI routing");
  EventFd event = HV_TRY(EventFd::create(0, EFD_NONBLOCK | EFD_CLOEXEC));
  const uint32_t gsi = HV_TRY(allocate_gsi());
  if (auto routed = vm_.set_msi_route(gsi, address, data); !routed) {
    release_gsi(gsi);
    return std::move(routed).error().with_context("MSI route on GSI " + std::to_string(gsi));
  }
  if (auto registered = vm_.register_irqfd(event, gsi); !registered) {
    (void)vm_.remove_msi_route(gsi);
    release_gsi(gsi);
    return std::move(registered).error().with_context("irqfd on GSI " + std::to_string(gsi));
  }
  return std::unique_ptr<MsiRoute>(std::make_unique<Route>(*this, gsi, std::move(event)));
}

}  // namespace hostvisor
