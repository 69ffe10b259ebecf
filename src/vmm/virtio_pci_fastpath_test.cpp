// The virtio-pci fast paths against a Vm that records what the backend is
// asked to do (ioeventfds, MSI routes, irqfds), with the real PCI root,
// virtio-pci transport and event loop: registrations follow BAR 0, a signal
// on a notify eventfd runs the queue on the event loop, MSI-X vectors go out
// through irqfds, and everything is undone at teardown.
#include "vmm/virtio_pci_fastpath.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "devices/bus/bus.h"
#include "devices/pci/pci_root.h"
#include "devices/virtio/virtio_constants.h"
#include "hv/accel.h"
#include "hv/cpu_state.h"
#include "hv/testing/real_mode.h"
#include "hv/testing/recording_interrupt_controller.h"
#include "vmm/testing/counting_device.h"
#include "vmm/testing/kvm_guest_run.h"
#include "vmm/testing/recording_vm.h"

namespace hostvisor {
namespace {

using namespace std::chrono_literals;
using testing::CountingDevice;
using testing::RecordingInterruptController;
using testing::RecordingVm;

constexpr uint64_t kRam = 1 << 20;
constexpr uint8_t kSlot = 3;
constexpr uint64_t kMovedBar = 0xe0000000;

class FastPathTest : public ::testing::Test {
 protected:
  void build(bool fast, uint32_t msi_gsis = 64) {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    vm = std::make_unique<RecordingVm>(fast, msi_gsis);
    loop = std::move(EventLoop::create()).value();
    loop->start();
    bus_mapper = std::make_unique<BusBarMapper>(mmio, pio);
    fastpath = std::make_unique<VirtioPciFastPath>(*bus_mapper, *vm, *loop);
    root = std::make_unique<PciRoot>(&vm->irq, fastpath.get());
    counting = std::make_shared<CountingDevice>();
    device = std::move(VirtioPciDevice::create(counting, memory)).value();
    ASSERT_TRUE(fastpath->add_device(device).ok());
    ASSERT_TRUE(root->add_device(device, kSlot).ok());
  }
  void TearDown() override {
    if (loop) loop->stop();
    root.reset();
    fastpath.reset();
  }

  uint64_t bar0() { return device->notify_address(0).value() - VirtioPciDevice::notify_offset(0); }
  void cfg_write(uint16_t reg, uint32_t value, unsigned size = 4) {
    root->config_write({0, kSlot, 0}, reg, size, value);
  }
  uint32_t cfg_read(uint16_t reg, unsigned size = 4) { return root->config_read({0, kSlot, 0}, reg, size); }
  void move_bar0(uint64_t address) {
    cfg_write(pci_reg::kBar0, static_cast<uint32_t>(address));
    cfg_write(pci_reg::kBar0 + 4, static_cast<uint32_t>(address >> 32));
  }
  template <typename T>
  void bar_write(uint64_t offset, T value) {
    device->bar_write(0, offset, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof value));
  }
  // What a driver does up to DRIVER_OK, with both queues live.
  void activate() {
    bar_write<uint8_t>(0x14, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    bar_write<uint32_t>(0x08, 1);  // driver_feature_select: bits 32-63
    bar_write<uint32_t>(0x0c, 1);  // VERSION_1
    bar_write<uint8_t>(0x14, virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
    for (uint16_t q = 0; q < 2; ++q) {
      bar_write<uint16_t>(0x16, q);
      bar_write<uint64_t>(0x20, 0x10000 + q * 0x1000);
      bar_write<uint64_t>(0x28, 0x10800 + q * 0x1000);
      bar_write<uint64_t>(0x30, 0x10c00 + q * 0x1000);
      bar_write<uint16_t>(0x1a, q);  // MSI-X vector q
      bar_write<uint16_t>(0x1c, 1);
    }
    bar_write<uint8_t>(
        0x14, virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk | virtio::kStatusDriverOk);
    ASSERT_EQ(device->device_status() & virtio::kStatusDeviceNeedsReset, 0);
  }
  uint16_t msix_cap() {
    for (uint16_t at = cfg_read(pci_reg::kCapabilitiesPointer, 1); at; at = cfg_read(at + 1, 1))
      if (cfg_read(at, 1) == pci_cap_id::kMsix) return at;
    ADD_FAILURE() << "no MSI-X capability";
    return 0;
  }
  void program_vector(uint16_t v, uint32_t data, bool masked) {
    const uint64_t entry = VirtioPciDevice::kMsixTableOffset + 16ull * v;
    bar_write<uint32_t>(entry, 0xfee00000);
    bar_write<uint32_t>(entry + 4, 0);
    bar_write<uint32_t>(entry + 8, data);
    bar_write<uint32_t>(entry + 12, masked ? 1 : 0);
  }
  void enable_msix() { cfg_write(msix_cap() + 2, 0x8000, 2); }
  // Signals queue q's notify eventfd as KVM would on a matching guest write.
  void guest_notify(uint16_t q) {
    for (const auto& [fd, address, length, match] : vm->registered())
      if (address == bar0() + VirtioPciDevice::notify_offset(q)) {
        const uint64_t one = 1;
        ASSERT_EQ(::write(fd, &one, sizeof one), 8);
        return;
      }
    ADD_FAILURE() << "queue " << q << " has no ioeventfd";
  }
  bool wait_for(const std::function<bool()>& done) {
    for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
      if (done()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return done();
  }

  GuestMemory memory;
  Bus mmio{"MMIO"};
  Bus pio{"port I/O", 0xffff};
  std::unique_ptr<RecordingVm> vm;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<BusBarMapper> bus_mapper;
  std::unique_ptr<VirtioPciFastPath> fastpath;
  std::unique_ptr<PciRoot> root;
  std::shared_ptr<CountingDevice> counting;
  std::shared_ptr<VirtioPciDevice> device;
};

TEST_F(FastPathTest, NotifyRegistersFollowBarZero) {
  build(true);
  const uint64_t base = bar0();
  using Io = RecordingVm::Ioeventfd;
  auto at = [](const std::set<Io>& s) {
    std::set<std::tuple<uint64_t, uint32_t, std::optional<uint64_t>>> r;
    for (const auto& [fd, a, l, m] : s) r.insert({a, l, m});
    return r;
  };
  // One per queue: a 2-byte write of the queue index at its notify register.
  EXPECT_EQ(at(vm->registered()), (std::set<std::tuple<uint64_t, uint32_t, std::optional<uint64_t>>>{
                                      {base + 0x3000, 2, uint64_t{0}}, {base + 0x3004, 2, uint64_t{1}}}));
  EXPECT_EQ(fastpath->registered_queues(*device), 2u);

  move_bar0(kMovedBar);
  EXPECT_EQ(bar0(), kMovedBar);
  EXPECT_EQ(at(vm->registered()), (std::set<std::tuple<uint64_t, uint32_t, std::optional<uint64_t>>>{
                                      {kMovedBar + 0x3000, 2, uint64_t{0}}, {kMovedBar + 0x3004, 2, uint64_t{1}}}));

  // Memory decoding off: nothing may be absorbed; on again: back.
  const uint32_t command = cfg_read(pci_reg::kCommand, 2);
  cfg_write(pci_reg::kCommand, command & ~pci_command::kMemorySpace, 2);
  EXPECT_TRUE(vm->registered().empty());
  EXPECT_EQ(fastpath->registered_queues(*device), 0u);
  cfg_write(pci_reg::kCommand, command, 2);
  EXPECT_EQ(vm->registered().size(), 2u);

  // The BAR is still on the bus: the other registers work the ordinary way.
  uint16_t num_queues = 0;
  ASSERT_TRUE(mmio.read(kMovedBar + 0x12, std::span(reinterpret_cast<uint8_t*>(&num_queues), 2)));
  EXPECT_EQ(num_queues, 2);

  root.reset();
  fastpath.reset();  // teardown unregisters what is left
  EXPECT_TRUE(vm->registered().empty());
}

TEST_F(FastPathTest, NotifyEventfdRunsTheQueueOnTheEventLoop) {
  build(true);
  activate();
  guest_notify(1);
  ASSERT_TRUE(wait_for([&] { return counting->notified[1] == 1; }));
  EXPECT_EQ(counting->notified[0], 0);
  EXPECT_NE(counting->notify_thread.load(), std::this_thread::get_id());
  // Several signals before the loop wakes are one drain of the queue, never lost.
  guest_notify(0);
  guest_notify(0);
  ASSERT_TRUE(wait_for([&] { return counting->notified[0] >= 1; }));
  // A notify after a device reset is ignored by the transport, as on the exit path.
  bar_write<uint8_t>(0x14, 0);
  guest_notify(0);
  std::this_thread::sleep_for(50ms);
  EXPECT_LE(counting->notified[0], 2);
  EXPECT_EQ(fastpath->registered_queues(*device), 2u);
}

TEST_F(FastPathTest, ExitPathWritesStillNotify) {
  build(true);
  activate();
  // A 4-byte write (no ioeventfd matches it) exits and reaches the device through the bus.
  const uint32_t index = 1;
  ASSERT_TRUE(
      mmio.write(bar0() + VirtioPciDevice::notify_offset(1), std::span(reinterpret_cast<const uint8_t*>(&index), 4)));
  EXPECT_EQ(counting->notified[1], 1);
}

TEST_F(FastPathTest, MsixVectorsGoThroughIrqfdsAndMaskingStillHolds) {
  build(true);
  activate();
  program_vector(0, 0x41, false);
  program_vector(1, 0x42, true);
  enable_msix();
  // The unmasked vector has a route and an irqfd; the masked one not yet.
  ASSERT_EQ(vm->routes.size(), 1u);
  const uint32_t gsi0 = vm->routes.begin()->first;
  EXPECT_EQ(vm->routes[gsi0], (RecordingInterruptController::Msi{0xfee00000, 0x41}));
  EXPECT_EQ(vm->irqfds.count(gsi0), 1u);

  guest_notify(0);  // the device answers on vector 0
  ASSERT_TRUE(wait_for([&] { return counting->notified[0] == 1; }));
  ASSERT_TRUE(wait_for([&] { return vm->consume_irqfd(gsi0) == 1; }));
  EXPECT_TRUE(vm->irq.msis().empty());  // not through KVM_SIGNAL_MSI

  guest_notify(1);  // vector 1 is masked: pending, nothing fired
  ASSERT_TRUE(wait_for([&] { return counting->notified[1] == 1; }));
  uint8_t pba = 0;
  device->bar_read(0, VirtioPciDevice::kMsixPbaOffset, std::span(&pba, 1));
  EXPECT_EQ(pba, 0x2);
  EXPECT_EQ(vm->routes.size(), 1u);
  program_vector(1, 0x42, false);  // unmask: bound and delivered through its irqfd
  ASSERT_EQ(vm->routes.size(), 2u);
  uint32_t gsi1 = 0;
  for (const auto& [gsi, msi] : vm->routes)
    if (msi.data == 0x42) gsi1 = gsi;
  EXPECT_EQ(vm->consume_irqfd(gsi1), 1u);
  device->bar_read(0, VirtioPciDevice::kMsixPbaOffset, std::span(&pba, 1));
  EXPECT_EQ(pba, 0);

  root.reset();
  fastpath.reset();  // teardown releases the irqfds and routes
  EXPECT_TRUE(vm->routes.empty());
  EXPECT_TRUE(vm->irqfds.empty());
}

TEST_F(FastPathTest, VectorsBeyondTheBackendsRoutesUseTheInterruptController) {
  build(true, /*msi_gsis=*/1);
  activate();
  program_vector(0, 0x41, false);
  program_vector(1, 0x42, false);
  enable_msix();
  EXPECT_EQ(vm->routes.size(), 1u);
  guest_notify(1);
  guest_notify(0);
  ASSERT_TRUE(wait_for([&] { return counting->notified[0] == 1 && counting->notified[1] == 1; }));
  ASSERT_TRUE(wait_for([&] { return vm->consume_irqfd(vm->routes.begin()->first) == 1; }));
  ASSERT_EQ(vm->irq.msis().size(), 1u);  // the vector without a route: KVM_SIGNAL_MSI
}

TEST_F(FastPathTest, WithoutFastEventfdsEverythingTakesTheOrdinaryPath) {
  build(false);
  EXPECT_FALSE(fastpath->notify_fast_path());
  EXPECT_FALSE(fastpath->msi_fast_path());
  EXPECT_EQ(vm->ioeventfd_registrations, 0);
  activate();
  program_vector(0, 0x41, false);
  enable_msix();
  const uint16_t index = 0;
  ASSERT_TRUE(
      mmio.write(bar0() + VirtioPciDevice::notify_offset(0), std::span(reinterpret_cast<const uint8_t*>(&index), 2)));
  EXPECT_EQ(counting->notified[0], 1);  // on this thread, through the bus
  EXPECT_EQ(counting->notify_thread.load(), std::this_thread::get_id());
  ASSERT_EQ(vm->irq.msis().size(), 1u);
  EXPECT_EQ(vm->irq.msis()[0], (RecordingInterruptController::Msi{0xfee00000, 0x41}));
  EXPECT_TRUE(vm->routes.empty());
}

TEST(VmMsiRouter, HandsOutGsisFromTheBackendsRangeAndReusesReleasedOnes) {
  RecordingVm vm(true, 2);
  VmMsiRouter router(vm);
  auto a = router.create_route(0xfee00000, 0x31);
  auto b = router.create_route(0xfee00000, 0x32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(vm.routes, (std::map<uint32_t, RecordingInterruptController::Msi>{{24, {0xfee00000, 0x31}},
                                                                              {25, {0xfee00000, 0x32}}}));
  auto c = router.create_route(0xfee00000, 0x33);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(router.gsis_in_use(), 2u);
  // Retargeting keeps the GSI and its irqfd; firing signals the irqfd.
  ASSERT_TRUE((*a)->retarget(0xfee01000, 0x41).ok());
  EXPECT_EQ(vm.routes[24], (RecordingInterruptController::Msi{0xfee01000, 0x41}));
  (*a)->fire();
  EXPECT_EQ(vm.consume_irqfd(24), 1u);
  // A released GSI loses its irqfd and route before it is handed out again.
  a->reset();
  EXPECT_EQ(vm.routes.count(24), 0u);
  EXPECT_EQ(vm.irqfds.count(24), 0u);
  auto d = router.create_route(0xfee00000, 0x34);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(vm.routes[24].data, 0x34u);
  EXPECT_EQ(router.gsis_in_use(), 2u);
}

TEST(VmMsiRouter, ABackendWithoutFastEventfdsHasNoRoutes) {
  RecordingVm vm(false, 0);
  EXPECT_FALSE(VmMsiRouter::supported(vm));
  VmMsiRouter router(vm);
  EXPECT_EQ(router.create_route(0xfee00000, 0x31).error().code(), ErrorCode::kUnsupported);
}

// The same path on the real KVM backend: guest code writes the notify
// registers; the matching write must not exit and must reach the queue
// through the event loop, the other one must exit as before.
TEST(FastPathOnKvm, GuestNotifyWriteReachesTheQueueWithoutAnExit) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0)
    GTEST_SKIP() << "SKIPPED: /dev/kvm is missing or not accessible on this host; the KVM fast path was NOT tested";
  auto hypervisor = create_hypervisor(Accel::kKvm);
  ASSERT_TRUE(hypervisor.ok()) << hypervisor.error().message();
  auto vm = (*hypervisor)->create_vm(VmConfig{1});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  if (!(*vm)->supports_fast_eventfds()) GTEST_SKIP() << "SKIPPED: this KVM has no irqfd/ioeventfd";
  constexpr uint64_t kGuestRam = 0x80000;  // the BAR goes just above it, where real-mode code reaches
  constexpr uint64_t kBarAt = 0x90000;
  GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kGuestRam}})).value();
  ASSERT_TRUE((*vm)->map_memory(memory).ok());
  auto vcpu = (*vm)->create_vcpu(0);
  ASSERT_TRUE(vcpu.ok()) << vcpu.error().message();

  Bus mmio{"MMIO"};
  Bus pio{"port I/O", 0xffff};
  auto loop = std::move(EventLoop::create()).value();
  loop->start();
  BusBarMapper bus_mapper(mmio, pio);
  auto fastpath = std::make_unique<VirtioPciFastPath>(bus_mapper, **vm, *loop);
  auto root = std::make_unique<PciRoot>(&(*vm)->interrupts(), fastpath.get());
  auto counting = std::make_shared<CountingDevice>();
  auto device = std::move(VirtioPciDevice::create(counting, memory)).value();
  ASSERT_TRUE(fastpath->add_device(device).ok());
  ASSERT_TRUE(root->add_device(device, kSlot).ok());
  root->config_write({0, kSlot, 0}, pci_reg::kBar0, 4, static_cast<uint32_t>(kBarAt));
  root->config_write({0, kSlot, 0}, pci_reg::kBar0 + 4, 4, 0);
  ASSERT_EQ(device->notify_address(0), kBarAt + 0x3000);
  ASSERT_EQ(fastpath->registered_queues(*device), 2u);

  auto reg = [&](uint64_t offset, auto value) {
    device->bar_write(0, offset, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof value));
  };
  reg(0x14, uint8_t{virtio::kStatusAcknowledge | virtio::kStatusDriver});
  reg(0x08, uint32_t{1});
  reg(0x0c, uint32_t{1});
  reg(0x14, uint8_t{virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk});
  for (uint16_t q = 0; q < 2; ++q) {
    reg(0x16, q);
    reg(0x20, uint64_t{0x10000} + q * 0x1000);
    reg(0x28, uint64_t{0x10800} + q * 0x1000);
    reg(0x30, uint64_t{0x10c00} + q * 0x1000);
    reg(0x1c, uint16_t{1});
  }
  reg(0x14, uint8_t{virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk |
                    virtio::kStatusDriverOk});

  // clang-format off
  const std::vector<uint8_t> code = {
      0xb8, 0x00, 0x90,                    // mov ax, 0x9000
      0x8e, 0xd8,                          // mov ds, ax
      0xc7, 0x06, 0x04, 0x30, 0x01, 0x00,  // mov word [0x3004], 1  -> queue 1's ioeventfd, no exit
      0xc7, 0x06, 0x00, 0x30, 0x05, 0x00,  // mov word [0x3000], 5  -> not the queue index: exits
      0xe6, 0xf4,                          // out 0xf4, al
      0xeb, 0xfe,                          // jmp $
  };
  // clang-format on
  ASSERT_TRUE(memory.write(GuestAddress(0x1000), code).ok());
  ASSERT_TRUE(testing::enter_real_mode(**vcpu, 0x1000).ok());

  testing::run_to_debug_port(**vcpu, [&](MmioExit& m) {
    EXPECT_TRUE(m.is_write);
    EXPECT_EQ(m.address, kBarAt + 0x3000) << "only the write that matches no ioeventfd may exit";
    EXPECT_TRUE(mmio.write(m.address, m.data));  // the ordinary path, on this thread
  });
  EXPECT_EQ(counting->notified[0], 1);  // through the exit
  for (int i = 0; i < 500 && counting->notified[1] == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(counting->notified[1], 1);  // through the ioeventfd and the event loop
  loop->stop();
  root.reset();
  fastpath.reset();
}

}  // namespace
}  // namespace hostvisor
