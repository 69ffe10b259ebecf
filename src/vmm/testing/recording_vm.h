// Test support: a Vm with the fast-eventfd calls of a KVM backend
// (ioeventfds, MSI routes, irqfds) that records what it is asked to do, for
// the tests of the virtio fast paths.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "hv/testing/recording_interrupt_controller.h"
#include "hv/hypervisor.h"

namespace hostvisor::testing {

// It refuses what KVM refuses (duplicate registrations, removing what is not
// there, GSIs outside the range).
class RecordingVm : public Vm {
 public:
  RecordingVm(bool fast, uint32_t msi_gsis) : fast_(fast), msi_gsis_(msi_gsis) {}

  Result<void> map_memory(const GuestMemory&) override { return ok(); }
  Result<std::unique_ptr<Vcpu>> create_vcpu(unsigned) override {
    return Error(ErrorCode::kUnsupported, "no vCPUs here");
  }
  InterruptController& interrupts() override { return irq; }
  bool supports_fast_eventfds() const override { return fast_; }
  GsiRange msi_route_gsis() const override { return fast_ ? GsiRange{24, 24 + msi_gsis_} : GsiRange{}; }

  using Ioeventfd = std::tuple<int, uint64_t, uint32_t, std::optional<uint64_t>>;  // fd, address, length, match
  Result<void> register_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                  std::optional<uint64_t> datamatch) override {
    std::lock_guard lock(mutex);
    EXPECT_FALSE(is_pio);
    if (!ioeventfds.insert({event.fd(), address, length, datamatch}).second)
      return Error(ErrorCode::kBusy, "already registered");
    ++ioeventfd_registrations;
    return ok();
  }
  Result<void> unregister_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool,
                                    std::optional<uint64_t> datamatch) override {
    std::lock_guard lock(mutex);
    if (ioeventfds.erase({event.fd(), address, length, datamatch}) == 0)
      return Error(ErrorCode::kNotFound, "not registered");
    return ok();
  }
  Result<void> set_msi_route(uint32_t gsi, uint64_t address, uint32_t data) override {
    std::lock_guard lock(mutex);
    const GsiRange range = msi_route_gsis();
    if (gsi < range.first || gsi >= range.end) return Error(ErrorCode::kOutOfRange, "GSI out of range");
    routes[gsi] = {address, data};
    return ok();
  }
  Result<void> remove_msi_route(uint32_t gsi) override {
    std::lock_guard lock(mutex);
    if (routes.erase(gsi) == 0) return Error(ErrorCode::kNotFound, "no route");
    return ok();
  }
  Result<void> register_irqfd(const EventFd& event, uint32_t gsi) override {
    std::lock_guard lock(mutex);
    if (!irqfds.emplace(gsi, event.fd()).second) return Error(ErrorCode::kBusy, "GSI has an irqfd");
    return ok();
  }
  Result<void> unregister_irqfd(const EventFd& event, uint32_t gsi) override {
    std::lock_guard lock(mutex);
    auto it = irqfds.find(gsi);
    if (it == irqfds.end() || it->second != event.fd()) return Error(ErrorCode::kNotFound, "no irqfd");
    irqfds.erase(it);
    return ok();
  }

  // What an irqfd on `gsi` was signalled with since the last call (as KVM would consume it).
  uint64_t consume_irqfd(uint32_t gsi) {
    std::lock_guard lock(mutex);
    auto it = irqfds.find(gsi);
    if (it == irqfds.end()) return 0;
    uint64_t count = 0;
    return ::read(it->second, &count, sizeof count) == sizeof count ? count : 0;
  }
  std::set<Ioeventfd> registered() {
    std::lock_guard lock(mutex);
    return ioeventfds;
  }

  RecordingInterruptController irq;
  std::mutex mutex;
  std::set<Ioeventfd> ioeventfds;
  int ioeventfd_registrations = 0;
  std::map<uint32_t, RecordingInterruptController::Msi> routes;
  std::map<uint32_t, int> irqfds;

 private:
  bool fast_;
  uint32_t msi_gsis_;
};

}  // namespace hostvisor::testing
