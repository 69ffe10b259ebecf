// Drives virtio-balloon through the virtqueue test driver: inflated pages go
// back to the host (the memfd's blocks drop) and read as zeros, PFNs outside
// RAM, duplicates and pages holding any device's rings are ignored,
// reported free ranges are discarded, statistics are kept and requested
// again after the interval, the work per turn is bounded, the target and
// `actual` travel through the configuration space, and the state survives a
// save and restore.
#include "devices/virtio/balloon/virtio_balloon.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <memory>
#include <thread>
#include <vector>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "memory/testing/hugetlb_pool.h"

namespace hostvisor {
namespace {

namespace vb = virtio_balloon;
using testing::RecordingVirtioInterrupt;
using testing::run_rescheduled_turn;
using testing::VirtqueueTestDriver;

constexpr uint64_t kRam = 16 << 20;
constexpr uint16_t kQueueSize = 128;
constexpr uint64_t kRings = 0x10000;     // queue q's rings at kRings + q * 0x4000
constexpr uint64_t kBuffers = 0x40000;   // PFN arrays, stats buffers
constexpr uint64_t kPages = 8ull << 20;  // the pages the tests give away
constexpr unsigned kQueues = 4;          // inflate, deflate, stats, reporting

class VirtioBalloonTest : public ::testing::Test {
 protected:
  void SetUp() override { memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value(); }

  void start(VirtioBalloonOptions options = {}, uint64_t drop_features = 0) {
    device = std::make_shared<VirtioBalloon>(options);
    features = (device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1)) & ~drop_features;
    std::vector<DeviceMemoryAreas::Area> rings;
    for (unsigned q = 0; q < device->queue_count(); ++q) {
      drivers.push_back(std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRings + q * 0x4000ull));
      queues[q] = std::move(Virtqueue::create(memory, drivers[q]->layout(), features)).value();
      const auto areas = virtqueue_ring_areas(drivers[q]->layout());
      rings.insert(rings.end(), areas.begin(), areas.end());
    }
    // What the transport does when the driver enables the queues.
    memory.device_areas().publish(this, std::move(rings));
    ASSERT_TRUE(activate(*device).ok());
  }
  // Hands the queues to `balloon` as a transport would at DRIVER_OK (also
  // to a device restored from another's state: the rings go on).
  Result<void> activate(VirtioBalloon& balloon) {
    return balloon.activate(VirtioActivation{&memory, features, std::span(queues, balloon.queue_count()),
                                             std::span(enabled, balloon.queue_count()), &interrupt});
  }

  // Puts PFN array `pfns` at buffer slot `slot` and posts it on `queue`.
  void post_pfns(uint16_t queue, uint16_t head, const std::vector<uint32_t>& pfns) {
    const uint64_t at = kBuffers + head * 0x1000ull + queue * 0x80000ull;
    ASSERT_TRUE(
        memory.write(GuestAddress(at), std::span(reinterpret_cast<const uint8_t*>(pfns.data()), pfns.size() * 4)).ok());
    drivers[queue]->add_chain(head, {{at, static_cast<uint32_t>(pfns.size() * 4), false}});
  }
  void fill(uint64_t address, uint64_t length, uint8_t value) {
    ASSERT_TRUE(memory.fill(GuestAddress(address), value, length).ok());
  }
  uint8_t byte_at(uint64_t address) { return memory.read_obj<uint8_t>(GuestAddress(address)).value(); }
  // How much of [address, address + length) the host holds in memory
  // (mincore: resident pages of the mapping, for private and shared RAM alike).
  uint64_t resident(uint64_t address, uint64_t length) {
    uint8_t* host = memory.host_pointer(GuestAddress(address), length);
    EXPECT_NE(host, nullptr);
    std::vector<unsigned char> pages(length / 4096);
    EXPECT_EQ(::mincore(host, length, pages.data()), 0);
    uint64_t bytes = 0;
    for (unsigned char page : pages) bytes += (page & 1) ? 4096 : 0;
    return bytes;
  }
  static uint32_t pfn(uint64_t address) { return static_cast<uint32_t>(address >> vb::kPfnShift); }

  GuestMemory memory;
  std::vector<std::unique_ptr<VirtqueueTestDriver>> drivers;
  std::shared_ptr<VirtioBalloon> device;
  uint64_t features = 0;
  Virtqueue queues[kQueues];
  bool enabled[kQueues] = {true, true, true, true};
  RecordingVirtioInterrupt interrupt;
};

TEST_F(VirtioBalloonTest, OffersWhatItWasAskedForWithItsQueues) {
  VirtioBalloon plain(VirtioBalloonOptions{
      .deflate_on_oom = false, .free_page_reporting = false, .stats_interval = std::chrono::seconds(0)});
  EXPECT_EQ(plain.device_type(), 5u);
  EXPECT_EQ(plain.queue_count(), 2);
  EXPECT_EQ(plain.device_features() & 0xff, 0u);
  VirtioBalloon full(VirtioBalloonOptions{.deflate_on_oom = true});
  EXPECT_EQ(full.queue_count(), 4);
  EXPECT_EQ(full.device_features() & 0xff, uint64_t{1} << vb::kFeatureStatsVq |
                                               uint64_t{1} << vb::kFeatureDeflateOnOom |
                                               uint64_t{1} << vb::kFeatureReporting);
}

TEST_F(VirtioBalloonTest, InflatedPagesGoBackToTheHostAndReadAsZeros) {
  start();
  fill(kPages, 64 * 4096, 0x5a);
  std::vector<uint32_t> pfns;
  for (uint32_t i = 0; i < 32; ++i) pfns.push_back(pfn(kPages) + i);
  pfns.push_back(pfn(kPages) + 3);  // a duplicate
  pfns.push_back(pfn(kRam));        // just past RAM
  pfns.push_back(0xffffffff);       // far outside
  pfns.push_back(pfn(kRings));      // the inflate queue's own descriptor table
  post_pfns(0, 0, pfns);
  ASSERT_EQ(resident(kPages, 64 * 4096), 64 * 4096u);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_TRUE(interrupt.needs_reset.empty());
  ASSERT_EQ(drivers[0]->used_idx(), 1);
  EXPECT_EQ(drivers[0]->used(0).id, 0u);
  // Measured before reading them back: a read of a hole in shared memory allocates a page again.
  EXPECT_EQ(resident(kPages, 64 * 4096), 32 * 4096u) << "exactly the 32 pages inside RAM went back";
  EXPECT_EQ(byte_at(kPages), 0);
  EXPECT_EQ(byte_at(kPages + 32 * 4096 - 1), 0);
  EXPECT_EQ(byte_at(kPages + 32 * 4096), 0x5a) << "a page the guest kept";
  EXPECT_EQ(device->status().discarded_bytes, 32 * 4096u);

  // The ring page was not discarded: the queue still works.
  post_pfns(0, 1, {pfn(kPages + 40 * 4096)});
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(drivers[0]->used_idx(), 2);
  EXPECT_EQ(byte_at(kPages + 40 * 4096), 0);

  // Deflating is answered; the guest writes its pages again and gets them.
  post_pfns(1, 0, {pfn(kPages), pfn(kPages) + 1});
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_EQ(drivers[1]->used_idx(), 1);
  fill(kPages, 4096, 0x77);
  EXPECT_EQ(byte_at(kPages + 100), 0x77);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBalloonTest, ReportedRangesAreDiscardedExceptTheDevicesRings) {
  start();
  fill(kPages, 2 << 20, 0x33);
  // Two ranges, as Linux posts them (device-writable), one covering every ring.
  drivers[3]->add_chain(0, {{kPages, 2 << 20, true}, {kRings - 0x1000, 0x20000, true}});
  ASSERT_TRUE(device->process_queue(3).ok());
  ASSERT_EQ(drivers[3]->used_idx(), 1);
  EXPECT_EQ(drivers[3]->used(0).len, 0u);
  EXPECT_EQ(resident(kPages, 2 << 20), 0u);  // before a read maps the zero page there
  EXPECT_EQ(byte_at(kPages + 12345), 0);
  EXPECT_GE(device->status().reported_bytes, 2u << 20);
  // The reporting queue's rings survived: it serves the next report.
  fill(kPages, 4096, 0x44);
  drivers[3]->add_chain(2, {{kPages, 4096, true}});
  ASSERT_TRUE(device->process_queue(3).ok());
  EXPECT_EQ(drivers[3]->used_idx(), 2);
  EXPECT_EQ(byte_at(kPages), 0);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Another device's rings (published by its transport) are kept from a
// hostile guest's inflations and reports alike, and counted.
TEST_F(VirtioBalloonTest, OtherDevicesRingsAreKeptAndCounted) {
  start();
  const int neighbour = 0;                // another device's transport, as the key it publishes under
  const uint64_t ring = kPages + 0x3000;  // a ring of 0x1800 bytes across two pages
  memory.device_areas().publish(&neighbour, {{ring, ring + 0x1800}});
  fill(kPages, 16 * 4096, 0x5a);
  std::vector<uint32_t> pfns;
  for (uint32_t i = 0; i < 8; ++i) pfns.push_back(pfn(kPages) + i);
  post_pfns(0, 0, pfns);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(byte_at(ring), 0x5a) << "the neighbour's ring was given away by an inflation";
  EXPECT_EQ(byte_at(ring + 0x17ff), 0x5a);
  EXPECT_EQ(byte_at(kPages), 0);
  EXPECT_EQ(byte_at(kPages + 0x5000), 0);
  EXPECT_EQ(device->status().discarded_bytes, 6 * 4096u);
  EXPECT_EQ(device->status().ring_bytes_kept, 2 * 4096u);

  fill(kPages, 16 * 4096, 0x6b);
  drivers[3]->add_chain(0, {{kPages, 16 * 4096, true}});
  ASSERT_TRUE(device->process_queue(3).ok());
  EXPECT_EQ(drivers[3]->used_idx(), 1);
  EXPECT_EQ(byte_at(ring + 0x1000), 0x6b) << "the neighbour's ring was given away by a report";
  EXPECT_EQ(byte_at(kPages + 0x2fff), 0);
  EXPECT_EQ(byte_at(kPages + 0x5000), 0);
  EXPECT_EQ(device->status().reported_bytes, 14 * 4096u);
  EXPECT_EQ(device->status().ring_bytes_kept, 4 * 4096u);

  // Once the neighbour withdraws them (its driver reset it) the pages are the guest's to give.
  memory.device_areas().publish(&neighbour, {});
  drivers[3]->add_chain(1, {{ring, 4096, true}});
  ASSERT_TRUE(device->process_queue(3).ok());
  EXPECT_EQ(byte_at(ring), 0);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Shared RAM (a memfd) really shrinks: the pages leave the file, not just the mapping.
TEST_F(VirtioBalloonTest, SharedMemoryLosesThePagesFromItsFile) {
  memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}}, {.shared = true})).value();
  ASSERT_GE(memory.memfd(), 0);
  fill(kRings, 0x10000, 0);  // the rings' pages are in the file before the count
  start();
  fill(kPages, 1 << 20, 0x5a);
  auto file_bytes = [&] {
    struct stat st {};
    EXPECT_EQ(::fstat(memory.memfd(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  };
  std::vector<uint32_t> pfns;
  for (uint32_t i = 0; i < 256; ++i) pfns.push_back(pfn(kPages) + i);
  post_pfns(0, 0, pfns);
  const uint64_t before = file_bytes();
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(before - file_bytes(), 1u << 20);
  EXPECT_EQ(byte_at(kPages + 4096), 0);
}

// hugetlbfs RAM goes back in 2 MiB pages only: an inflated huge page once
// all 512 of its 4 KiB pages are in the balloon, a report trimmed to the
// whole huge pages inside it.
TEST_F(VirtioBalloonTest, WithHugePagesOnlyWholeHugePagesGoBack) {
  ::hostvisor::testing::HugetlbPool pool(kRam >> 21);  // given back afterwards
  if (!pool.ok()) GTEST_SKIP() << "cannot grow the huge page pool here: " << pool.why();
  auto huge = GuestMemory::create({{GuestAddress(0), kRam}}, {.huge_pages = HugePages::kHugetlb});
  ASSERT_TRUE(huge.ok()) << huge.error().message();
  memory = std::move(*huge);
  ASSERT_EQ(memory.discard_granularity(), 2u << 20);
  start();
  fill(kPages, 8 << 20, 0x5a);

  std::vector<uint32_t> all_but_one;
  for (uint32_t i = 0; i < 511; ++i) all_but_one.push_back(pfn(kPages) + i);
  post_pfns(0, 0, all_but_one);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(device->status().discarded_bytes, 0u);
  EXPECT_EQ(byte_at(kPages), 0x5a) << "a huge page went back with a page of it still the guest's";
  post_pfns(0, 1, {pfn(kPages) + 511});
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(device->status().discarded_bytes, 2u << 20);
  EXPECT_EQ(byte_at(kPages), 0);
  EXPECT_EQ(byte_at(kPages + (2 << 20)), 0x5a);

  // A report from 4 KiB before the second huge page to 4 KiB past the third.
  drivers[3]->add_chain(0, {{kPages + (2 << 20) - 4096, (4 << 20) + 8192, true}});
  ASSERT_TRUE(device->process_queue(3).ok());
  EXPECT_EQ(device->status().reported_bytes, 4u << 20);
  EXPECT_EQ(byte_at(kPages + (2 << 20)), 0);
  EXPECT_EQ(byte_at(kPages + (6 << 20)), 0x5a) << "the huge page the report only began";
  EXPECT_TRUE(interrupt.needs_reset.empty());

  // Across a snapshot: 511 pages of the fourth huge page in the balloon,
  // the state saved and restored into a new device, then the last page.
  const uint64_t fourth = kPages + (6 << 20);
  std::vector<uint32_t> fourth_but_one;
  for (uint32_t i = 1; i < 512; ++i) fourth_but_one.push_back(pfn(fourth) + i);
  post_pfns(0, 2, fourth_but_one);
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_TRUE(device->quiesce().ok());
  StateWriter saved;
  device->save_state(saved);
  device->reset();
  auto restored = std::make_shared<VirtioBalloon>(VirtioBalloonOptions{});
  StateReader in(saved.bytes(), "balloon");
  ASSERT_TRUE(restored->restore_state(in, VirtioBalloon::kStateVersion).ok());
  ASSERT_TRUE(activate(*restored).ok());
  EXPECT_EQ(byte_at(fourth), 0x5a);
  post_pfns(0, 3, {pfn(fourth)});
  ASSERT_TRUE(restored->process_queue(0).ok());
  EXPECT_EQ(restored->status().discarded_bytes, 2u << 20) << "the restored balloon forgot the 511 pages";
  EXPECT_EQ(byte_at(fourth + 4096), 0);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBalloonTest, WithoutStatisticsTheReportingQueueIsTheThird) {
  // Linux numbers the queues it uses consecutively: no statsq, reporting_vq is 2.
  start({}, virtio::feature_bit(vb::kFeatureStatsVq));
  fill(kPages, 4096, 0x11);
  drivers[2]->add_chain(0, {{kPages, 4096, true}});
  ASSERT_TRUE(device->process_queue(2).ok());
  EXPECT_EQ(drivers[2]->used_idx(), 1);
  EXPECT_EQ(byte_at(kPages), 0);
}

TEST_F(VirtioBalloonTest, StatisticsAreKeptAndRequestedAgainAfterTheInterval) {
  start(VirtioBalloonOptions{.stats_interval = std::chrono::seconds(1)});
  std::vector<vb::Stat> stats = {{vb::kStatFreeMemory, 100 << 20}, {vb::kStatTotalMemory, 1000 << 20}, {99, 7}};
  ASSERT_TRUE(memory.write(GuestAddress(kBuffers), std::span(reinterpret_cast<const uint8_t*>(stats.data()), 30)).ok());
  drivers[2]->add_chain(0, {{kBuffers, 30, false}});
  ASSERT_TRUE(device->process_queue(2).ok());
  EXPECT_EQ(drivers[2]->used_idx(), 0) << "the buffer is held until stats are wanted again";
  BalloonStats got = device->status().stats;
  EXPECT_EQ(got.updates, 1u);
  EXPECT_TRUE(got.has(vb::kStatFreeMemory));
  EXPECT_EQ(got.value[vb::kStatFreeMemory], 100u << 20);
  EXPECT_EQ(got.value[vb::kStatTotalMemory], 1000u << 20);
  EXPECT_FALSE(got.has(vb::kStatSwapIn));
  // After the interval the device returns the buffer: the request.
  ASSERT_TRUE(run_rescheduled_turn(*device, 3000));
  EXPECT_EQ(drivers[2]->used_idx(), 1);
  EXPECT_EQ(interrupt.used.back(), 2);
}

// Linux posts its first statistics before DRIVER_OK, when a notification
// reaches no device: activation finds them.
TEST_F(VirtioBalloonTest, StatisticsPostedBeforeActivationAreRead) {
  std::vector<vb::Stat> stats = {{vb::kStatTotalMemory, 1000 << 20}};
  ASSERT_TRUE(memory.write(GuestAddress(kBuffers), std::span(reinterpret_cast<const uint8_t*>(stats.data()), 10)).ok());
  VirtqueueTestDriver early(memory, kQueueSize, kRings + 2 * 0x4000ull);
  early.add_chain(0, {{kBuffers, 10, false}});
  start();
  EXPECT_EQ(device->status().stats.updates, 1u);
  EXPECT_EQ(device->status().stats.value[vb::kStatTotalMemory], 1000u << 20);
}

TEST_F(VirtioBalloonTest, WorkPerTurnIsBounded) {
  start();
  std::vector<uint32_t> many(VirtioBalloon::kMaxPagesPerChain * 4, pfn(kPages));  // longer than a chain is read
  const uint16_t chains = 40;
  for (uint16_t head = 0; head < chains; ++head) post_pfns(0, head, many);
  ASSERT_TRUE(device->process_queue(0).ok());
  const uint16_t per_turn = VirtioBalloon::kMaxPagesPerTurn / VirtioBalloon::kMaxPagesPerChain;
  EXPECT_EQ(drivers[0]->used_idx(), per_turn);
  while (drivers[0]->used_idx() < chains) ASSERT_TRUE(run_rescheduled_turn(*device)) << drivers[0]->used_idx();
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Free page reporting is bounded per turn too: a driver that fills the
// reporting ring with more ranges than kMaxRangesPerTurn gets the rest
// served in later turns, each chain whole.
TEST_F(VirtioBalloonTest, ReportedRangesPerTurnAreBounded) {
  start();
  // More ranges than the ring has descriptors: each chain is one indirect
  // table of 32 ranges (Linux's largest report), at kBuffers.
  const uint16_t chains = 40, per_chain = 32;
  for (uint16_t head = 0; head < chains; ++head) {
    const uint64_t table = kBuffers + head * 0x1000ull;
    for (uint16_t i = 0; i < per_chain; ++i)
      drivers[3]->write_desc_at(
          table + 16ull * i, kPages + (head * per_chain + i) * 4096ull, 4096,
          static_cast<uint16_t>(virtio::kDescFlagWrite | (i + 1 < per_chain ? virtio::kDescFlagNext : 0)),
          static_cast<uint16_t>(i + 1));
    drivers[3]->write_desc(head, table, 16 * per_chain, virtio::kDescFlagIndirect, 0);
    drivers[3]->publish(head);
  }
  ASSERT_TRUE(device->process_queue(3).ok());
  EXPECT_EQ(drivers[3]->used_idx(), VirtioBalloon::kMaxRangesPerTurn / per_chain);
  EXPECT_EQ(device->status().reported_bytes, VirtioBalloon::kMaxRangesPerTurn * 4096ull);
  while (drivers[3]->used_idx() < chains) ASSERT_TRUE(run_rescheduled_turn(*device)) << drivers[3]->used_idx();
  EXPECT_EQ(device->status().reported_bytes, uint64_t{chains} * per_chain * 4096);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBalloonTest, TargetAndActualTravelThroughTheConfigurationSpace) {
  start();
  device->set_target_pages(51200);
  EXPECT_EQ(interrupt.config_changes, 1);
  vb::Config config{};
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&config), sizeof config));
  EXPECT_EQ(config.num_pages, 51200u);
  const uint32_t actual = 51000;
  device->write_config(vb::kConfigActualOffset, std::span(reinterpret_cast<const uint8_t*>(&actual), 4));
  const uint32_t bogus = 7;
  device->write_config(0, std::span(reinterpret_cast<const uint8_t*>(&bogus), 4));  // num_pages is the host's
  EXPECT_EQ(device->status().actual_pages, 51000u);
  EXPECT_EQ(device->status().target_pages, 51200u);
  device->set_target_pages(51200);
  EXPECT_EQ(interrupt.config_changes, 1) << "no interrupt when nothing changed";
}

TEST_F(VirtioBalloonTest, StateRoundTripsAndRejectsUnknownTags) {
  VirtioBalloon::State state;
  state.num_pages = 1000;
  state.actual = 900;
  state.stats.present = 1u << vb::kStatFreeMemory;
  state.stats.value[vb::kStatFreeMemory] = 12345;
  state.stats.updates = 3;
  StateWriter out;
  VirtioBalloon::encode_state(out, state);
  VirtioBalloon restored(VirtioBalloonOptions{});
  StateReader in(out.bytes(), "balloon");
  ASSERT_TRUE(restored.restore_state(in, VirtioBalloon::kStateVersion).ok());
  EXPECT_EQ(restored.status().target_pages, 1000u);
  EXPECT_EQ(restored.status().actual_pages, 900u);
  EXPECT_EQ(restored.status().stats.value[vb::kStatFreeMemory], 12345u);

  state.stats.present = 1u << 20;
  StateWriter bad;
  VirtioBalloon::encode_state(bad, state);
  StateReader bad_in(bad.bytes(), "balloon");
  EXPECT_FALSE(restored.restore_state(bad_in, VirtioBalloon::kStateVersion).ok());
}

TEST_F(VirtioBalloonTest, HugePageBitmapRoundTripsAndVersionOneHasNone) {
  VirtioBalloon::State state;
  state.num_pages = 10;
  state.inflated = {{3, 0xff}, {70, uint64_t{1} << 63}};
  StateWriter out;
  VirtioBalloon::encode_state(out, state);
  StateReader in(out.bytes(), "balloon");
  const VirtioBalloon::State back = VirtioBalloon::decode_state(in);
  ASSERT_TRUE(in.finish().ok());
  EXPECT_EQ(back.inflated, state.inflated);

  // Version 1 ended after the statistics.
  StateWriter v1;
  VirtioBalloon::encode_state(v1, VirtioBalloon::State{.num_pages = 10, .actual = 5});
  std::vector<uint8_t> old = v1.take();
  old.resize(old.size() - sizeof(uint64_t));  // no bitmap count
  VirtioBalloon restored(VirtioBalloonOptions{});
  StateReader old_in(old, "balloon");
  ASSERT_TRUE(restored.restore_state(old_in, 1).ok());
  EXPECT_EQ(restored.status().actual_pages, 5u);

  // Out of order, empty words, and a count larger than the record are corrupt.
  for (const auto& words :
       {std::vector<VirtioBalloon::InflatedWord>{{5, 1}, {5, 2}}, std::vector<VirtioBalloon::InflatedWord>{{5, 0}}}) {
    StateWriter bad;
    VirtioBalloon::encode_state(bad, VirtioBalloon::State{.inflated = words});
    StateReader bad_in(bad.bytes(), "balloon");
    EXPECT_FALSE(restored.restore_state(bad_in, VirtioBalloon::kStateVersion).ok());
  }
  StateWriter lying;
  VirtioBalloon::encode_state(lying, VirtioBalloon::State{});
  std::vector<uint8_t> bytes = lying.take();
  bytes[bytes.size() - 1] = 0x10;  // 2^60 words
  StateReader lying_in(bytes, "balloon");
  EXPECT_FALSE(restored.restore_state(lying_in, VirtioBalloon::kStateVersion).ok());
  StateReader future(out.bytes(), "balloon");
  EXPECT_FALSE(restored.restore_state(future, VirtioBalloon::kStateVersion + 1).ok());
}

// A restored bitmap that reaches past this machine's RAM refuses activation.
TEST_F(VirtioBalloonTest, ARestoredBitmapBeyondRamIsCorrupt) {
  ::hostvisor::testing::HugetlbPool pool(kRam >> 21);
  if (!pool.ok()) GTEST_SKIP() << "cannot grow the huge page pool here: " << pool.why();
  memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}}, {.huge_pages = HugePages::kHugetlb})).value();
  start();
  device->reset();
  StateWriter out;
  VirtioBalloon::encode_state(out, VirtioBalloon::State{.inflated = {{kRam / 4096 / 64, 1}}});
  VirtioBalloon restored(VirtioBalloonOptions{});
  StateReader in(out.bytes(), "balloon");
  ASSERT_TRUE(restored.restore_state(in, VirtioBalloon::kStateVersion).ok());
  const auto activated = activate(restored);
  ASSERT_FALSE(activated.ok());
  EXPECT_NE(activated.error().message().find("beyond this machine's RAM"), std::string::npos)
      << activated.error().message();
}

TEST_F(VirtioBalloonTest, QuiesceGivesTheStatisticsBufferBackAndTakesItAgain) {
  start();
  std::vector<vb::Stat> stats = {{vb::kStatFreeMemory, 1}};
  ASSERT_TRUE(memory.write(GuestAddress(kBuffers), std::span(reinterpret_cast<const uint8_t*>(stats.data()), 10)).ok());
  drivers[2]->add_chain(0, {{kBuffers, 10, false}});
  ASSERT_TRUE(device->process_queue(2).ok());
  EXPECT_EQ(queues[2].in_flight(), 1u);
  ASSERT_TRUE(device->quiesce().ok());
  EXPECT_EQ(queues[2].in_flight(), 0u);
  ASSERT_TRUE(run_rescheduled_turn(*device));
  EXPECT_EQ(queues[2].in_flight(), 1u) << "taken again by the machine that goes on";
  EXPECT_EQ(device->status().stats.updates, 2u);
}

}  // namespace
}  // namespace hostvisor
