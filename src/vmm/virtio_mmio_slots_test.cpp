#include "vmm/virtio_mmio_slots.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "arch/x86_64/layout.h"
#include "devices/virtio/rng/virtio_rng.h"
#include "devices/virtio/virtio_constants.h"
#include "hv/accel.h"
#include "hv/cpu_state.h"
#include "vmm/testing/counting_device.h"
#include "vmm/testing/kvm_guest_run.h"
#include "vmm/testing/recording_vm.h"

namespace hostvisor {
namespace {

uint32_t read32(Bus& bus, uint64_t address) {
  uint8_t bytes[4] = {};
  EXPECT_TRUE(bus.read(address, bytes));
  uint32_t v;
  std::memcpy(&v, bytes, 4);
  return v;
}

TEST(VirtioMmioSlots, EachDeviceGetsTheNextWindowSlotAndGsiUntilTheyRunOut) {
  auto memory = GuestMemory::create({{GuestAddress(0), 1 << 20}});
  ASSERT_TRUE(memory.ok());
  Bus bus("MMIO");
  testing::RecordingInterruptController interrupts;
  VirtioMmioSlots slots(bus, interrupts, *memory);

  for (uint32_t i = 0; i < arch::kVirtioMmioSlots; ++i) {
    auto added = slots.add(std::make_shared<VirtioRng>());
    ASSERT_TRUE(added.ok()) << added.error().message();
    const uint64_t base = arch::kVirtioMmioStart + i * arch::kVirtioMmioStride;
    // The guest finds a virtio-mmio v2 entropy device (ID 4) there.
    EXPECT_EQ(read32(bus, base + 0x000), VirtioMmioDevice::kMagic);
    EXPECT_EQ(read32(bus, base + 0x004), 2u);
    EXPECT_EQ(read32(bus, base + 0x008), 4u);
    ASSERT_EQ(slots.descriptions().size(), i + 1);
    EXPECT_EQ(slots.descriptions()[i].base, base);
    EXPECT_EQ(slots.descriptions()[i].size, VirtioMmioDevice::kSize);
    EXPECT_EQ(slots.descriptions()[i].gsi, arch::kVirtioMmioFirstGsi + i);
  }
  // Nothing answers between the register blocks.
  uint8_t byte;
  EXPECT_FALSE(bus.read(arch::kVirtioMmioStart + VirtioMmioDevice::kSize, std::span(&byte, 1)));

  auto extra = slots.add(std::make_shared<VirtioRng>());
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(extra.error().message().find("transport=pci"), std::string::npos) << extra.error().message();
  EXPECT_EQ(slots.descriptions().size(), arch::kVirtioMmioSlots);
  EXPECT_FALSE(slots.add(nullptr).ok());
}

using namespace std::chrono_literals;
using testing::CountingDevice;
using testing::RecordingVm;

void write32(Bus& bus, uint64_t address, uint32_t value) {
  uint8_t bytes[4];
  std::memcpy(bytes, &value, 4);
  EXPECT_TRUE(bus.write(address, bytes));
}

bool wait_for(const std::function<bool()>& done) {
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

// What a driver does up to DRIVER_OK for the CountingDevice at `base`, with
// both queues live (virtio 1.2, 4.2.3.1).
void activate_counting_device(Bus& bus, uint64_t base) {
  write32(bus, base + 0x070, virtio::kStatusAcknowledge | virtio::kStatusDriver);
  write32(bus, base + 0x024, 1);  // DriverFeaturesSel: bits 32-63
  write32(bus, base + 0x020, 1);  // VERSION_1
  write32(bus, base + 0x070, virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
  for (uint32_t q = 0; q < 2; ++q) {
    write32(bus, base + 0x030, q);
    write32(bus, base + 0x038, 16);
    write32(bus, base + 0x080, 0x10000 + q * 0x1000);
    write32(bus, base + 0x090, 0x10800 + q * 0x1000);
    write32(bus, base + 0x0a0, 0x10c00 + q * 0x1000);
    write32(bus, base + 0x044, 1);
  }
  write32(bus, base + 0x070,
          virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk | virtio::kStatusDriverOk);
  ASSERT_EQ(read32(bus, base + 0x070) & virtio::kStatusDeviceNeedsReset, 0u);
}

// The virtio-mmio slots on a Vm with fast eventfds (as KVM has), with the
// real transport and event loop.
class MmioFastPathTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBase = arch::kVirtioMmioStart;
  static constexpr uint32_t kGsi = arch::kVirtioMmioFirstGsi;

  void build(bool fast) {
    memory = std::move(GuestMemory::create({{GuestAddress(0), 1 << 20}})).value();
    vm = std::make_unique<RecordingVm>(fast, 0);
    loop = std::move(EventLoop::create()).value();
    loop->start();
    slots = std::make_unique<VirtioMmioSlots>(bus, *vm, *loop, memory);
    counting = std::make_shared<CountingDevice>();
    auto added = slots->add(counting);
    ASSERT_TRUE(added.ok()) << added.error().message();
  }
  void TearDown() override {
    if (loop) loop->stop();
    slots.reset();
  }
  void activate() { activate_counting_device(bus, kBase); }
  // Signals queue q's QueueNotify eventfd as KVM would on a matching guest write.
  void guest_notify(uint16_t q) {
    for (const auto& [fd, address, length, match] : vm->registered())
      if (address == kBase + 0x050 && match == uint64_t{q}) {
        const uint64_t one = 1;
        ASSERT_EQ(::write(fd, &one, sizeof one), 8);
        return;
      }
    ADD_FAILURE() << "queue " << q << " has no ioeventfd";
  }

  GuestMemory memory;
  Bus bus{"MMIO"};
  std::unique_ptr<RecordingVm> vm;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<VirtioMmioSlots> slots;
  std::shared_ptr<CountingDevice> counting;
};

TEST_F(MmioFastPathTest, EachQueueNotifyWriteHasAnIoeventfdUntilTeardown) {
  build(true);
  EXPECT_TRUE(slots->notify_fast_path());
  // One per queue: a 4-byte write of the queue index to QueueNotify.
  std::set<std::tuple<uint64_t, uint32_t, std::optional<uint64_t>>> at;
  for (const auto& [fd, address, length, match] : vm->registered()) at.insert({address, length, match});
  EXPECT_EQ(at, (std::set<std::tuple<uint64_t, uint32_t, std::optional<uint64_t>>>{{kBase + 0x050, 4, uint64_t{0}},
                                                                                   {kBase + 0x050, 4, uint64_t{1}}}));
  EXPECT_EQ(slots->registered_queues(0), 2u);
  EXPECT_EQ(slots->registered_queues(1), 0u);  // no device there

  // A second device in the next slot gets its own, at its own register block.
  ASSERT_TRUE(slots->add(std::make_shared<CountingDevice>()).ok());
  EXPECT_EQ(slots->registered_queues(1), 2u);
  EXPECT_EQ(vm->registered().size(), 4u);

  loop->stop();
  slots.reset();  // teardown unregisters every one
  EXPECT_TRUE(vm->registered().empty());
}

TEST_F(MmioFastPathTest, NotifyEventfdRunsTheQueueOnTheEventLoopAndRaisesTheLine) {
  build(true);
  activate();
  guest_notify(1);
  ASSERT_TRUE(wait_for([&] { return counting->notified[1] == 1; }));
  EXPECT_EQ(counting->notified[0], 0);
  EXPECT_NE(counting->notify_thread.load(), std::this_thread::get_id());
  // The used-buffer interrupt stays on the level-triggered line.
  EXPECT_EQ(read32(bus, kBase + 0x060), 1u);
  EXPECT_TRUE(vm->irq.level(kGsi));
  write32(bus, kBase + 0x064, 1);  // InterruptAck
  EXPECT_FALSE(vm->irq.level(kGsi));

  // Several signals before the loop wakes are one drain of the queue, never lost.
  guest_notify(0);
  guest_notify(0);
  ASSERT_TRUE(wait_for([&] { return counting->notified[0] >= 1; }));
  // After a device reset a notify is ignored by the transport, as on the exit path.
  const int before = counting->notified[0];
  write32(bus, kBase + 0x070, 0);
  guest_notify(0);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(counting->notified[0], before);
  EXPECT_EQ(slots->registered_queues(0), 2u);
}

TEST_F(MmioFastPathTest, ExitPathWritesStillNotify) {
  build(true);
  activate();
  // What the backend does not absorb (here: every write, as a bus access) reaches the device on this thread.
  write32(bus, kBase + 0x050, 1);
  EXPECT_EQ(counting->notified[1], 1);
  EXPECT_EQ(counting->notify_thread.load(), std::this_thread::get_id());
  write32(bus, kBase + 0x050, 7);  // no such queue: ignored
  EXPECT_EQ(counting->notified[0] + counting->notified[1], 1);
}

TEST_F(MmioFastPathTest, WithoutFastEventfdsEveryNotifyExits) {
  build(false);
  EXPECT_FALSE(slots->notify_fast_path());
  EXPECT_TRUE(vm->registered().empty());
  EXPECT_EQ(slots->registered_queues(0), 0u);
  activate();
  write32(bus, kBase + 0x050, 0);
  EXPECT_EQ(counting->notified[0], 1);
}

// The same path on the real KVM backend: 32-bit guest code writes
// QueueNotify; the write of a queue index must not exit and must reach the
// queue through the event loop, a write of anything else must exit.
TEST(MmioFastPathOnKvm, GuestQueueNotifyWriteReachesTheQueueWithoutAnExit) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0)
    GTEST_SKIP() << "SKIPPED: /dev/kvm is missing or not accessible on this host; the KVM virtio-mmio fast path was "
                    "NOT tested";
  auto hypervisor = create_hypervisor(Accel::kKvm);
  ASSERT_TRUE(hypervisor.ok()) << hypervisor.error().message();
  auto vm = (*hypervisor)->create_vm(VmConfig{1});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  if (!(*vm)->supports_fast_eventfds()) GTEST_SKIP() << "SKIPPED: this KVM has no ioeventfd";
  GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), 0x80000}})).value();
  ASSERT_TRUE((*vm)->map_memory(memory).ok());
  auto vcpu = (*vm)->create_vcpu(0);
  ASSERT_TRUE(vcpu.ok()) << vcpu.error().message();

  Bus bus{"MMIO"};
  auto loop = std::move(EventLoop::create()).value();
  loop->start();
  auto slots = std::make_unique<VirtioMmioSlots>(bus, **vm, *loop, memory);
  auto counting = std::make_shared<CountingDevice>();
  ASSERT_TRUE(slots->add(counting).ok());
  ASSERT_EQ(slots->registered_queues(0), 2u);
  constexpr uint64_t kBase = arch::kVirtioMmioStart;
  activate_counting_device(bus, kBase);

  // clang-format off
  const std::vector<uint8_t> code = {
      0xc7, 0x05, 0x50, 0x00, 0xb0, 0xfe, 0x01, 0x00, 0x00, 0x00,  // mov dword [0xfeb00050], 1 -> queue 1's ioeventfd
      0xc7, 0x05, 0x50, 0x00, 0xb0, 0xfe, 0x05, 0x00, 0x00, 0x00,  // mov dword [0xfeb00050], 5 -> no queue 5: exits
      0xe6, 0xf4,                                                  // out 0xf4, al
      0xeb, 0xfe,                                                  // jmp $
  };
  // clang-format on
  static_assert(arch::kVirtioMmioStart == 0xfeb00000, "the guest code writes slot 0's QueueNotify");
  ASSERT_TRUE(memory.write(GuestAddress(0x1000), code).ok());
  // Flat 32-bit protected mode, set up directly (no GDT needed: nothing reloads a segment).
  SystemRegisters sregs = reset_system_registers();
  sregs.cr0 |= 1;  // PE
  Segment code_segment;
  code_segment.selector = 0x08;
  code_segment.limit = 0xffffffff;
  code_segment.type = 0xb;  // execute/read, accessed
  code_segment.db = true;
  code_segment.g = true;
  Segment data_segment = code_segment;
  data_segment.selector = 0x10;
  data_segment.type = 0x3;  // read/write, accessed
  sregs.cs = code_segment;
  sregs.ds = sregs.es = sregs.ss = data_segment;
  ASSERT_TRUE((*vcpu)->set_system_registers(sregs).ok());
  Registers regs;
  regs.rip = 0x1000;
  regs.rsp = 0x7000;
  ASSERT_TRUE((*vcpu)->set_registers(regs).ok());

  int exits_at_notify = 0;
  testing::run_to_debug_port(**vcpu, [&](MmioExit& m) {
    EXPECT_TRUE(m.is_write);
    EXPECT_EQ(m.address, kBase + 0x050);
    uint32_t value = 0;
    std::memcpy(&value, m.data.data(), std::min<size_t>(m.data.size(), 4));
    EXPECT_EQ(value, 5u) << "only the write that matches no ioeventfd may exit";
    EXPECT_TRUE(bus.write(m.address, m.data));  // the ordinary path, on this thread
    ++exits_at_notify;
  });
  EXPECT_EQ(exits_at_notify, 1);
  ASSERT_TRUE(wait_for([&] { return counting->notified[1] == 1; }));  // through the ioeventfd and the event loop
  EXPECT_EQ(counting->notified[0], 0);
  loop->stop();
  slots.reset();
}

}  // namespace
}  // namespace hostvisor
