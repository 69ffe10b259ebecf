// MsiRouter over a Vm's fast eventfds (KVM): each route is a GSI from the
// backend's MSI range with an MSI routing entry for the message and an irqfd
// on it, so firing a route is one eventfd write and the kernel injects the
// interrupt. The machine hands it to virtio-pci devices for their MSI-X
// vectors; devices only see MsiRouter.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/pci/msi_router.h"
#include "hv/hypervisor.h"

namespace hostvisor {

class VmMsiRouter final : public MsiRouter {
 public:
  // `vm` must outlive the router, which must outlive its routes.
  explicit VmMsiRouter(Vm& vm);

  // Whether the backend can do it at all (fast eventfds and MSI routes).
  static bool supported(const Vm& vm);

  Result<std::unique_ptr<MsiRoute>> create_route(uint64_t address, uint32_t data) override;

  size_t gsis_in_use() const;

 private:
  class Route;
  Result<uint32_t> allocate_gsi();
  void release_gsi(uint32_t gsi);

  Vm& vm_;
  const Vm::GsiRange range_;
  mutable std::mutex mutex_;  // a leaf lock: nothing is called with it held
  uint32_t next_gsi_;         // never handed out yet: [next_gsi_, range_.end)
  std::vector<uint32_t> free_gsis_;
  size_t in_use_ = 0;
};

}  // namespace hostvisor
