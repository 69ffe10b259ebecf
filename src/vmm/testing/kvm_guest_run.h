// Test support: runs raw guest code on a real vCPU until it writes to port
// 0xf4, for the fast-path tests on KVM.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <variant>

#include "hv/hypervisor.h"

namespace hostvisor::testing {

// Runs `vcpu` until the guest's `out 0xf4` (at most `max_exits` exits),
// handing every MMIO exit to `on_mmio`. A watchdog kicks the vCPU after
// 20 s: anything slower is a hung guest (kvm_pvm runs ~1M instructions a
// second).
inline void run_to_debug_port(Vcpu& vcpu, const std::function<void(MmioExit&)>& on_mmio, int max_exits = 10) {
  std::atomic<bool> done = false;
  std::thread watchdog([&] {
    for (int i = 0; i < 2000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!done) vcpu.kick();
  });
  for (int i = 0; i < max_exits; ++i) {
    auto exit = vcpu.run();
    if (!exit) {
      ADD_FAILURE() << exit.error().message();
      break;
    }
    if (auto* m = std::get_if<MmioExit>(&*exit)) {
      on_mmio(*m);
      continue;
    }
    if (auto* p = std::get_if<PortIoExit>(&*exit)) {
      EXPECT_EQ(p->port, 0xf4);
      break;
    }
    ADD_FAILURE() << "unexpected exit " << exit->index();
    break;
  }
  done = true;
  watchdog.join();
}

}  // namespace hostvisor::testing
