#include "devices/pci/msix.h"

#include <gtest/gtest.h>

#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;

struct MsixFixture : ::testing::Test {
  MsixFixture() : config(PciConfigSpace::Identity{.vendor_id = 0x1af4, .device_id = 0x1044}), msix(4, 1, 0x800, 0xc00) {
    EXPECT_TRUE(config.add_bar(1, {PciBarKind::kMemory32, 0x1000, false}).ok());
    EXPECT_TRUE(msix.install(config).ok());
    msix.set_interrupt_controller(&irq);
    cap = config.read(pci_reg::kCapabilitiesPointer, 1);
  }
  void write_entry(uint16_t v, uint64_t address, uint32_t data, bool masked) {
    const uint32_t words[4] = {static_cast<uint32_t>(address), static_cast<uint32_t>(address >> 32), data,
                               masked ? 1u : 0u};
    for (int i = 0; i < 4; ++i)
      msix.table_write(0x800 + v * 16 + i * 4, std::span(reinterpret_cast<const uint8_t*>(&words[i]), 4));
  }
  void set_control(uint16_t value) {
    config.write(cap + 2, 2, value);
    msix.config_written(config);
  }
  uint64_t pba() {
    uint64_t v = 0;
    msix.pba_read(0xc00, std::span(reinterpret_cast<uint8_t*>(&v), 8));
    return v;
  }

  RecordingInterruptController irq;
  PciConfigSpace config;
  Msix msix;
  uint16_t cap = 0;
};

TEST_F(MsixFixture, CapabilityDescribesTableAndPba) {
  EXPECT_EQ(config.read(cap, 1), 0x11u);
  EXPECT_EQ(config.read(cap + 2, 2), 3u);  // table size N-1
  EXPECT_EQ(config.read(cap + 4, 4), 0x801u);
  EXPECT_EQ(config.read(cap + 8, 4), 0xc01u);
  config.write(cap + 2, 2, 0xffff);
  EXPECT_EQ(config.read(cap + 2, 2), 0xc003u);  // only Enable and Function Mask are writable
  config.write(cap + 4, 4, 0);
  EXPECT_EQ(config.read(cap + 4, 4), 0x801u);
}

TEST_F(MsixFixture, VectorsStartMaskedAndTableReadsBack) {
  for (uint16_t v = 0; v < 4; ++v) EXPECT_TRUE(msix.vector_masked(v));
  write_entry(2, 0xfee01000, 0x4041, false);
  uint32_t words[4];
  msix.table_read(0x800 + 32, std::span(reinterpret_cast<uint8_t*>(words), 16));
  EXPECT_EQ(words[0], 0xfee01000u);
  EXPECT_EQ(words[1], 0u);
  EXPECT_EQ(words[2], 0x4041u);
  EXPECT_EQ(words[3], 0u);
  uint64_t q = 0;
  msix.table_read(0x800 + 32, std::span(reinterpret_cast<uint8_t*>(&q), 8));  // 64-bit access
  EXPECT_EQ(q, 0xfee01000u);
  const uint32_t reserved = 0xfffffffe;  // reserved control bits stay zero
  msix.table_write(0x800 + 32 + 12, std::span(reinterpret_cast<const uint8_t*>(&reserved), 4));
  msix.table_read(0x800 + 32 + 12, std::span(reinterpret_cast<uint8_t*>(words), 4));
  EXPECT_EQ(words[0], 0u);
}

TEST_F(MsixFixture, DisabledDoesNotDeliver) {
  write_entry(0, 0xfee00000, 0x30, false);
  EXPECT_FALSE(msix.signal(0));
  EXPECT_TRUE(irq.msis().empty());
}

TEST_F(MsixFixture, UnmaskedVectorDelivers) {
  write_entry(1, 0xfee00000, 0x31, false);
  set_control(0x8000);
  EXPECT_TRUE(msix.signal(1));
  ASSERT_EQ(irq.msis().size(), 1u);
  EXPECT_EQ(irq.msis()[0], (RecordingInterruptController::Msi{0xfee00000, 0x31}));
  EXPECT_FALSE(msix.signal(4));  // no such vector
}

TEST_F(MsixFixture, MaskedVectorPendsAndFiresOnUnmask) {
  write_entry(3, 0xfee00000, 0x33, true);
  set_control(0x8000);
  EXPECT_TRUE(msix.signal(3));
  EXPECT_TRUE(irq.msis().empty());
  EXPECT_TRUE(msix.pending(3));
  EXPECT_EQ(pba(), 0x8u);
  write_entry(3, 0xfee00000, 0x33, false);
  ASSERT_EQ(irq.msis().size(), 1u);
  EXPECT_EQ(irq.msis()[0].data, 0x33u);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, FunctionMaskHoldsEveryVector) {
  write_entry(0, 0xfee00000, 0x40, false);
  write_entry(1, 0xfee00000, 0x41, false);
  set_control(0x8000 | 0x4000);
  msix.signal(0);
  msix.signal(1);
  EXPECT_TRUE(irq.msis().empty());
  EXPECT_EQ(pba(), 0x3u);
  set_control(0x8000);
  ASSERT_EQ(irq.msis().size(), 2u);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, ResetMasksEverything) {
  write_entry(0, 0xfee00000, 0x40, false);
  set_control(0x8000);
  msix.reset(config);
  EXPECT_FALSE(msix.enabled());
  EXPECT_TRUE(msix.vector_masked(0));
  EXPECT_EQ(config.read(cap + 2, 2), 3u);
}

TEST_F(MsixFixture, RegionChecks) {
  EXPECT_TRUE(msix.in_table(0x800, 64));
  EXPECT_FALSE(msix.in_table(0x800, 65));
  EXPECT_FALSE(msix.in_table(0x7ff, 1));
  EXPECT_TRUE(msix.in_pba(0xc00, 8));
  EXPECT_FALSE(msix.in_pba(0xc08, 1));
  EXPECT_FALSE(msix.in_table(UINT64_MAX, 2));
}

TEST(Msix, RejectsTableOutsideItsBar) {
  PciConfigSpace config(PciConfigSpace::Identity{});
  ASSERT_TRUE(config.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
  Msix msix(65, 0, 0xc00, 0x800);  // 65 * 16 bytes from 0xc00 overrun the 4 KiB BAR
  EXPECT_FALSE(msix.install(config).ok());
  Msix overlapping(4, 0, 0x800, 0x830);
  EXPECT_FALSE(overlapping.install(config).ok());
  Msix wrong_bar(4, 2, 0, 0x800);
  EXPECT_FALSE(wrong_bar.install(config).ok());
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

TEST_F(MsixFixture, StateRoundTrip) {
  write_entry(2, 0xfee02000, 0x52, true);
  set_control(0x8000);
  msix.signal(2);
  const Msix::State state = msix.save();
  Msix other(4, 1, 0x800, 0xc00);
  ASSERT_TRUE(other.restore(state).ok());
  EXPECT_TRUE(other.pending(2));
  EXPECT_TRUE(other.vector_masked(2));
  Msix smaller(2, 1, 0x800, 0xc00);
  EXPECT_FALSE(smaller.restore(state).ok());
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

// An MsiRouter that keeps a log of what the backend would be asked to do:
// routes created (with their messages), re-bound, fired and released.
class RecordingMsiRouter : public MsiRouter {
 public:
  struct Log {
    int created = 0;
    int retargeted = 0;
    int released = 0;
    std::vector<RecordingInterruptController::Msi> fired;
  };
  class Route : public MsiRoute {
   public:
    Route(Log& log, uint64_t address, uint32_t data, const bool& fail_retarget)
        : log_(log), msi_{address, data}, fail_retarget_(fail_retarget) {}
    ~Route() override { ++log_.released; }
    void fire() override { log_.fired.push_back(msi_); }
    Result<void> retarget(uint64_t address, uint32_t data) override {
      if (fail_retarget_) return Error(ErrorCode::kOutOfRange, "test router: retarget refused");
      ++log_.retargeted;
      msi_ = {address, data};
      return ok();
    }

   private:
    Log& log_;
    RecordingInterruptController::Msi msi_;
    const bool& fail_retarget_;  // the router's switch, as it is when retarget() is called
  };

  Result<std::unique_ptr<MsiRoute>> create_route(uint64_t address, uint32_t data) override {
    ++attempts;
    if (routes_left == 0) return Error(ErrorCode::kOutOfRange, "test router: no routes left");
    --routes_left;
    ++log.created;
    return std::unique_ptr<MsiRoute>(std::make_unique<Route>(log, address, data, fail_retarget));
  }

  Log log;
  int attempts = 0;
  int routes_left = 1000;
  bool fail_retarget = false;
};

struct MsixRoutingFixture : MsixFixture {
  MsixRoutingFixture() { msix.set_msi_router(&router); }
  ~MsixRoutingFixture() override { msix.set_msi_router(nullptr); }
  RecordingMsiRouter router;
};

TEST_F(MsixRoutingFixture, UnmaskedVectorGetsARouteAndFiresThroughIt) {
  write_entry(1, 0xfee00000, 0x31, true);
  set_control(0x8000);
  EXPECT_EQ(router.log.created, 0);  // masked: no route yet
  write_entry(1, 0xfee00000, 0x31, false);
  EXPECT_EQ(router.log.created, 1);  // bound when unmasked, before the first interrupt
  EXPECT_EQ(msix.routed_vectors(), 1u);
  EXPECT_TRUE(msix.signal(1));
  EXPECT_TRUE(msix.signal(1));
  ASSERT_EQ(router.log.fired.size(), 2u);
  EXPECT_EQ(router.log.fired[0], (RecordingInterruptController::Msi{0xfee00000, 0x31}));
  EXPECT_TRUE(irq.msis().empty());  // nothing went the slow way
  EXPECT_EQ(router.log.created, 1);
}

TEST_F(MsixRoutingFixture, MaskedVectorPendsWithoutFiringAndFiresOnceOnUnmask) {
  write_entry(2, 0xfee00000, 0x32, false);
  set_control(0x8000);
  write_entry(2, 0xfee00000, 0x32, true);  // the driver masks it again
  EXPECT_TRUE(msix.signal(2));
  EXPECT_TRUE(msix.signal(2));
  EXPECT_TRUE(router.log.fired.empty());
  EXPECT_EQ(pba(), 0x4u);
  write_entry(2, 0xfee00000, 0x32, false);
  ASSERT_EQ(router.log.fired.size(), 1u);  // two signals while masked: one pending interrupt
  EXPECT_EQ(pba(), 0u);
  EXPECT_TRUE(irq.msis().empty());
}

TEST_F(MsixRoutingFixture, FunctionMaskHoldsRoutedVectors) {
  write_entry(0, 0xfee00000, 0x40, false);
  set_control(0x8000);
  set_control(0x8000 | 0x4000);
  msix.signal(0);
  EXPECT_TRUE(router.log.fired.empty());
  EXPECT_EQ(pba(), 0x1u);
  set_control(0x8000);
  ASSERT_EQ(router.log.fired.size(), 1u);
  EXPECT_EQ(router.log.fired[0].data, 0x40u);
}

TEST_F(MsixRoutingFixture, ReprogrammedMessageRebindsTheRoute) {
  write_entry(3, 0xfee00000, 0x33, false);
  set_control(0x8000);
  write_entry(3, 0xfee01000, 0x43, true);  // masked, moved to another CPU and vector
  EXPECT_EQ(router.log.retargeted, 0);
  write_entry(3, 0xfee01000, 0x43, false);
  EXPECT_EQ(router.log.retargeted, 1);
  msix.signal(3);
  ASSERT_EQ(router.log.fired.size(), 1u);
  EXPECT_EQ(router.log.fired[0], (RecordingInterruptController::Msi{0xfee01000, 0x43}));
  // Changed while unmasked (undefined by the spec): the new message still wins.
  const uint32_t data = 0x53;
  msix.table_write(0x800 + 3 * 16 + 8, std::span(reinterpret_cast<const uint8_t*>(&data), 4));
  msix.signal(3);
  ASSERT_EQ(router.log.fired.size(), 2u);
  EXPECT_EQ(router.log.fired[1].data, 0x53u);
  EXPECT_EQ(router.log.created, 1);
}

TEST_F(MsixRoutingFixture, ExhaustedRouterFallsBackToTheInterruptControllerOncePerMessage) {
  router.routes_left = 0;
  write_entry(0, 0xfee00000, 0x60, false);
  set_control(0x8000);
  msix.signal(0);
  msix.signal(0);
  ASSERT_EQ(irq.msis().size(), 2u);
  EXPECT_EQ(irq.msis()[1], (RecordingInterruptController::Msi{0xfee00000, 0x60}));
  EXPECT_EQ(router.attempts, 1);  // not one attempt per interrupt
  router.routes_left = 1;
  write_entry(0, 0xfee00000, 0x61, false);  // a new message is worth another try
  msix.signal(0);
  EXPECT_EQ(router.attempts, 2);
  ASSERT_EQ(router.log.fired.size(), 1u);
  EXPECT_EQ(router.log.fired[0].data, 0x61u);
}

TEST_F(MsixRoutingFixture, FailedRebindDropsTheStaleRoute) {
  write_entry(1, 0xfee00000, 0x31, false);
  set_control(0x8000);
  ASSERT_EQ(msix.routed_vectors(), 1u);
  router.fail_retarget = true;
  router.routes_left = 0;
  write_entry(1, 0xfee00000, 0x71, false);
  EXPECT_EQ(msix.routed_vectors(), 0u);
  EXPECT_EQ(router.log.released, 1);
  msix.signal(1);
  EXPECT_TRUE(router.log.fired.empty());  // never the old message
  ASSERT_EQ(irq.msis().size(), 1u);
  EXPECT_EQ(irq.msis()[0].data, 0x71u);
}

TEST_F(MsixRoutingFixture, ResetAndDetachReleaseRoutes) {
  write_entry(0, 0xfee00000, 0x40, false);
  write_entry(1, 0xfee00000, 0x41, false);
  set_control(0x8000);
  EXPECT_EQ(msix.routed_vectors(), 2u);
  msix.reset(config);
  EXPECT_EQ(msix.routed_vectors(), 0u);
  EXPECT_EQ(router.log.released, 2);
  write_entry(0, 0xfee00000, 0x40, false);
  set_control(0x8000);
  EXPECT_EQ(msix.routed_vectors(), 1u);
  msix.set_msi_router(nullptr);
  EXPECT_EQ(router.log.released, 3);
  msix.signal(0);
  EXPECT_EQ(irq.msis().size(), 1u);  // without a router: the interrupt controller
}

TEST_F(MsixRoutingFixture, RestoredTableIsBoundAgainOnUse) {
  write_entry(2, 0xfee00000, 0x52, false);
  set_control(0x8000);
  Msix::State state = msix.save();
  state.entries[2].data = 0x62;
  ASSERT_TRUE(msix.restore(state).ok());
  msix.signal(2);
  ASSERT_EQ(router.log.fired.size(), 1u);
  EXPECT_EQ(router.log.fired[0].data, 0x62u);
}

}  // namespace
}  // namespace hostvisor
