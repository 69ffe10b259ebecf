// A faster way than InterruptController::signal_msi to deliver MSI messages
// that do not change between interrupts (MSI-X vectors): the backend binds
// one message to a route once, and firing the route afterwards is a single
// eventfd write from any thread (KVM: a GSI with an MSI routing entry plus an
// irqfd on it). The machine implements it with the Vm's methods; a device
// only sees this interface and never knows which backend is behind it.
//
// Routes deliver unconditionally: masking and pending bits stay the
// device's business (Msix decides whether to fire or to set a pending bit).
#pragma once

#include <cstdint>
#include <memory>

#include "base/result.h"

namespace hostvisor {

class MsiRoute {
 public:
  // Releases the route (and whatever the backend held for it).
  virtual ~MsiRoute() = default;
  // Delivers the message the route is bound to. Thread-safe, never blocks.
  virtual void fire() = 0;
  // Binds the route to another message. On failure the route keeps its old
  // message.
  virtual Result<void> retarget(uint64_t address, uint32_t data) = 0;
};

class MsiRouter {
 public:
  virtual ~MsiRouter() = default;
  // A route for (address, data), or an error when the backend has no route
  // left (the caller then falls back to InterruptController::signal_msi).
  // The router must outlive its routes. Thread-safe.
  virtual Result<std::unique_ptr<MsiRoute>> create_route(uint64_t address, uint32_t data) = 0;
};

}  // namespace hostvisor
