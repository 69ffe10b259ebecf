#include "devices/virtio/virtqueue.h"

#include <gtest/gtest.h>

#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using testing::VirtqueueTestDriver;

using virtio::feature_bit;
constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kRingBase = 0x10000;
constexpr uint64_t kData = 0x40000;
constexpr uint16_t kNext = virtio::kDescFlagNext;
constexpr uint16_t kWrite = virtio::kDescFlagWrite;
constexpr uint16_t kIndirect = virtio::kDescFlagIndirect;

class VirtqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create({{GuestAddress(0), kRam}});
    ASSERT_TRUE(m.ok());
    memory = std::move(m).value();
  }
  Virtqueue make(uint16_t size = 16, uint64_t features = feature_bit(virtio::kFeatureIndirectDesc)) {
    driver = std::make_unique<VirtqueueTestDriver>(memory, size, kRingBase);
    auto q = Virtqueue::create(memory, driver->layout(), features);
    EXPECT_TRUE(q.ok()) << q.error().message();
    return q.ok() ? std::move(q).value() : Virtqueue();
  }
  // Pops and expects a guest error mentioning `what`.
  void expect_rejected(Virtqueue& q, const std::string& what) {
    auto r = q.pop(memory);
    ASSERT_FALSE(r.ok()) << "chain was accepted";
    EXPECT_EQ(r.error().code(), ErrorCode::kGuest);
    EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  }

  GuestMemory memory;
  std::unique_ptr<VirtqueueTestDriver> driver;
};

TEST_F(VirtqueueTest, CreateValidatesTheLayout) {
  VirtqueueTestDriver d(memory, 16, kRingBase);
  VirtqueueLayout l = d.layout();
  EXPECT_TRUE(Virtqueue::create(memory, l, 0).ok());
  VirtqueueLayout bad = l;
  bad.size = 12;
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.size = 0;
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.desc_table = GuestAddress(kRingBase + 8);
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.used_ring = GuestAddress(l.used_ring.value() + 2);
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.avail_ring = GuestAddress(kRam - 8);  // ring runs off the end of RAM
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.desc_table = GuestAddress(0xfffffffffffffff0ull);
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
  bad = l;
  bad.size = 32768;  // 512 KiB descriptor table from 0x10000 fits, rings then do not
  bad.used_ring = GuestAddress(kRam - 0x1000);
  EXPECT_FALSE(Virtqueue::create(memory, bad, 0).ok());
}

TEST_F(VirtqueueTest, EmptyRingPopsNothing) {
  Virtqueue q = make();
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST_F(VirtqueueTest, NormalChainReadableThenWritable) {
  Virtqueue q = make();
  const uint8_t header[4] = {1, 2, 3, 4};
  const uint8_t body[3] = {5, 6, 7};
  ASSERT_TRUE(memory.write(GuestAddress(kData), header).ok());
  ASSERT_TRUE(memory.write(GuestAddress(kData + 0x100), body).ok());
  driver->add_chain(3, {{kData, 4, false}, {kData + 0x100, 3, false}, {kData + 0x200, 8, true}});
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_TRUE(r->has_value());
  const DescriptorChain& c = **r;
  EXPECT_EQ(c.head(), 3);
  EXPECT_EQ(c.buffers().size(), 3u);
  EXPECT_EQ(c.readable().size(), 2u);
  EXPECT_EQ(c.writable().size(), 1u);
  EXPECT_EQ(c.readable_bytes(), 7u);
  EXPECT_EQ(c.writable_bytes(), 8u);

  uint8_t gathered[10] = {};
  EXPECT_EQ(*c.read(memory, 0, gathered), 7u);
  EXPECT_EQ(std::vector<uint8_t>(gathered, gathered + 7), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7}));
  uint8_t tail[2] = {};
  EXPECT_EQ(*c.read(memory, 3, tail), 2u);  // crosses the buffer boundary
  EXPECT_EQ(tail[0], 4);
  EXPECT_EQ(tail[1], 5);
  const uint8_t reply[12] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
  EXPECT_EQ(*c.write(memory, 2, reply), 6u);  // only 8 - 2 bytes fit
  EXPECT_EQ(memory.read_obj<uint64_t>(GuestAddress(kData + 0x200)).value(), 0x0909090909090000ull);

  // Returning the chain reports the bytes the device wrote as DMA: the first
  // 6 bytes of the writable part, which starts at the buffer at kData + 0x200.
  std::vector<std::pair<uint64_t, uint64_t>> dma;
  memory.set_dma_write_observer([&](GuestAddress at, uint64_t n) { dma.emplace_back(at.value(), n); });
  ASSERT_TRUE(q.add_used(memory, c, 6).ok());
  memory.set_dma_write_observer(nullptr);
  ASSERT_FALSE(dma.empty());
  uint64_t reported = 0;
  for (const auto& [at, n] : dma) reported += n;
  EXPECT_EQ(reported, 6u);
  EXPECT_EQ(dma[0].first, c.writable()[0].address.value());
  EXPECT_EQ(driver->used_idx(), 1);
  EXPECT_EQ(driver->used(0).id, 3u);
  EXPECT_EQ(driver->used(0).len, 6u);
  auto again = q.pop(memory);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

TEST_F(VirtqueueTest, ZeroLengthBufferIsAccepted) {
  Virtqueue q = make();
  driver->add_chain(0, {{0xffffffffffff0000ull, 0, false}, {kData, 16, true}});
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ((*r)->writable_bytes(), 16u);
}

TEST_F(VirtqueueTest, IndirectChain) {
  Virtqueue q = make();
  const uint64_t table = kData + 0x1000;
  driver->write_desc_at(table, kData, 16, kNext, 1);
  driver->write_desc_at(table + 16, kData + 0x100, 32, kNext | kWrite, 2);
  driver->write_desc_at(table + 32, kData + 0x200, 64, kWrite, 0);
  driver->write_desc(5, table, 48, kIndirect, 0);
  driver->publish(5);
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok()) << r.error().message();
  const DescriptorChain& c = **r;
  EXPECT_EQ(c.head(), 5);
  ASSERT_EQ(c.buffers().size(), 3u);
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 96u);
  EXPECT_EQ(c.buffers()[2].address.value(), kData + 0x200);
}

TEST_F(VirtqueueTest, DirectDescriptorsThenIndirectTable) {
  Virtqueue q = make();
  const uint64_t table = kData + 0x1000;
  driver->write_desc_at(table, kData + 0x100, 32, kWrite, 0);
  driver->write_desc(0, kData, 8, kNext, 1);
  driver->write_desc(1, table, 16, kIndirect, 0);
  driver->publish(0);
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ((*r)->readable_bytes(), 8u);
  EXPECT_EQ((*r)->writable_bytes(), 32u);
}

TEST_F(VirtqueueTest, IndirectNeedsTheFeature) {
  Virtqueue q = make(16, 0);
  driver->write_desc_at(kData + 0x1000, kData, 16, 0, 0);
  driver->write_desc(0, kData + 0x1000, 16, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "VIRTIO_F_INDIRECT_DESC");
}

TEST_F(VirtqueueTest, RejectsALoop) {
  Virtqueue q = make();
  driver->write_desc(0, kData, 16, kNext, 1);
  driver->write_desc(1, kData, 16, kNext, 0);
  driver->publish(0);
  expect_rejected(q, "loop");
}

TEST_F(VirtqueueTest, RejectsASelfLoop) {
  Virtqueue q = make();
  driver->write_desc(7, kData, 16, kNext | kWrite, 7);
  driver->publish(7);
  expect_rejected(q, "loop");
}

TEST_F(VirtqueueTest, RejectsNextOutOfRange) {
  Virtqueue q = make();
  driver->write_desc(0, kData, 16, kNext, 16);
  driver->publish(0);
  expect_rejected(q, "next index 16");
}

TEST_F(VirtqueueTest, RejectsHeadOutOfRange) {
  Virtqueue q = make();
  driver->publish(200);
  expect_rejected(q, "head index");
}

TEST_F(VirtqueueTest, RejectsBufferOutsideRam) {
  Virtqueue q = make();
  driver->add_chain(0, {{kRam - 8, 16, true}});
  expect_rejected(q, "not in guest RAM");
}

TEST_F(VirtqueueTest, RejectsAddressPlusLengthOverflow) {
  Virtqueue q = make();
  driver->add_chain(0, {{0xfffffffffffff000ull, 0x2000, false}});
  expect_rejected(q, "not in guest RAM");
}

TEST_F(VirtqueueTest, RejectsAbsurdTotalLength) {
  // 300 descriptors of the whole 1 MiB RAM each: every one valid, the sum
  // (300 MiB) over the cap.
  Virtqueue q = make();
  const uint64_t table = 0x80000;
  for (uint16_t i = 0; i < 300; ++i) driver->write_desc_at(table + 16ull * i, 0, kRam, kNext | kWrite, i + 1);
  driver->write_desc_at(table + 16ull * 299, 0, kRam, kWrite, 0);
  driver->write_desc(0, table, 300 * 16, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "MiB");
}

TEST_F(VirtqueueTest, RejectsReadableAfterWritable) {
  Virtqueue q = make();
  driver->add_chain(0, {{kData, 16, true}, {kData + 0x100, 16, false}});
  expect_rejected(q, "device-readable buffer after a device-writable one");
}

TEST_F(VirtqueueTest, RejectsReadableAfterWritableAcrossIndirect) {
  Virtqueue q = make();
  const uint64_t table = kData + 0x1000;
  driver->write_desc_at(table, kData + 0x100, 32, 0, 0);
  driver->write_desc(0, kData, 8, kNext | kWrite, 1);
  driver->write_desc(1, table, 16, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "after a device-writable");
}

TEST_F(VirtqueueTest, RejectsNestedIndirect) {
  Virtqueue q = make();
  const uint64_t outer = kData + 0x1000, inner = kData + 0x2000;
  driver->write_desc_at(inner, kData, 16, 0, 0);
  driver->write_desc_at(outer, inner, 16, kIndirect, 0);
  driver->write_desc(0, outer, 16, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "nested indirect");
}

TEST_F(VirtqueueTest, RejectsIndirectTableOfBadSize) {
  for (uint32_t length : {24u, 0u, 8u, 17u}) {
    Virtqueue q = make();
    driver->write_desc(0, kData + 0x1000, length, kIndirect, 0);
    driver->publish(0);
    expect_rejected(q, "multiple of 16");
  }
}

TEST_F(VirtqueueTest, RejectsOversizedIndirectTable) {
  Virtqueue q = make();
  driver->write_desc(0, 0, (Virtqueue::kMaxIndirectDescriptors + 1) * 16, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "exceeds the limit");
}

TEST_F(VirtqueueTest, RejectsIndirectTableOutsideRam) {
  Virtqueue q = make();
  driver->write_desc(0, kRam - 16, 32, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "indirect table at");
}

TEST_F(VirtqueueTest, RejectsIndirectWithNext) {
  Virtqueue q = make();
  driver->write_desc_at(kData + 0x1000, kData, 16, 0, 0);
  driver->write_desc(0, kData + 0x1000, 16, kIndirect | kNext, 1);
  driver->publish(0);
  expect_rejected(q, "both INDIRECT and NEXT");
}

TEST_F(VirtqueueTest, RejectsLoopInsideIndirectTable) {
  Virtqueue q = make();
  const uint64_t table = kData + 0x1000;
  driver->write_desc_at(table, kData, 16, kNext, 1);
  driver->write_desc_at(table + 16, kData, 16, kNext, 0);
  driver->write_desc(0, table, 32, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "loop");
}

TEST_F(VirtqueueTest, RejectsIndirectNextOutOfTable) {
  Virtqueue q = make();
  const uint64_t table = kData + 0x1000;
  driver->write_desc_at(table, kData, 16, kNext, 2);
  driver->write_desc_at(table + 16, kData, 16, 0, 0);
  driver->write_desc(0, table, 32, kIndirect, 0);
  driver->publish(0);
  expect_rejected(q, "outside its table");
}

TEST_F(VirtqueueTest, RejectsAvailIndexRunningAhead) {
  Virtqueue q = make();
  driver->set_avail_idx(17);  // 17 new entries in a queue of 16
  expect_rejected(q, "ahead of the device");
}

TEST_F(VirtqueueTest, AvailIndexWrapsAround) {
  Virtqueue q = make(4);
  q.restore(Virtqueue::State{65535, 65535, 65535, true});
  driver->set_avail_idx(65535);
  driver->write_desc(0, kData, 16, kWrite, 0);
  driver->publish(0);  // slot 65535 % 4 = 3, idx wraps to 0
  auto r = q.pop(memory);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_TRUE(r->has_value());
  ASSERT_TRUE(q.add_used(memory, 0, 16).ok());
  EXPECT_EQ(driver->used_idx(), 0);
  EXPECT_EQ(driver->used(3).id, 0u);
  EXPECT_EQ(driver->used(3).len, 16u);
  EXPECT_EQ(q.state().next_avail, 0);
}

TEST_F(VirtqueueTest, UsedRingContentsInOrder) {
  Virtqueue q = make(4);
  for (uint16_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(q.add_used(memory, static_cast<uint16_t>(i % 4), 100u + i).ok());
  }
  EXPECT_EQ(driver->used_idx(), 6);
  // Slots 0 and 1 were overwritten by elements 4 and 5.
  EXPECT_EQ(driver->used(0).len, 104u);
  EXPECT_EQ(driver->used(1).len, 105u);
  EXPECT_EQ(driver->used(2).len, 102u);
  EXPECT_EQ(driver->used(3).id, 3u);
  EXPECT_FALSE(q.add_used(memory, 4, 0).ok());  // not a descriptor of this queue
}

// A head the driver makes available again before the device returned it is
// still the device's: pop() refuses it, whatever the chain looks like.
TEST_F(VirtqueueTest, RefusesAHeadThatIsStillInFlight) {
  Virtqueue q = make(4);
  driver->add_chain(0, {{kData, 16, true}});
  driver->add_chain(1, {{kData + 0x100, 16, true}});
  driver->publish(0);  // again, while the device holds it
  auto first = q.pop(memory);
  ASSERT_TRUE(first.ok() && first->has_value());
  auto second = q.pop(memory);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ(q.in_flight(), 2u);
  expect_rejected(q, "still holds it");
  EXPECT_EQ(q.state().next_avail, 2) << "the refused entry is not consumed";
  // Once returned, the head may be made available again.
  ASSERT_TRUE(q.add_used(memory, **first, 0).ok());
  EXPECT_EQ(q.in_flight(), 1u);
  auto reused = q.pop(memory);
  ASSERT_TRUE(reused.ok()) << reused.error().message();
  ASSERT_TRUE(reused->has_value());
  EXPECT_EQ((*reused)->head(), 0);
}

TEST_F(VirtqueueTest, ReturningAChainTwiceIsRefused) {
  Virtqueue q = make(4);
  driver->add_chain(2, {{kData, 16, true}});
  auto chain = q.pop(memory);
  ASSERT_TRUE(chain.ok() && chain->has_value());
  ASSERT_TRUE(q.add_used(memory, **chain, 4).ok());
  auto twice = q.add_used(memory, **chain, 4);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code(), ErrorCode::kInternal);
  EXPECT_EQ(driver->used_idx(), 1) << "nothing written for the second return";
  EXPECT_EQ(q.in_flight(), 0u);
}

TEST_F(VirtqueueTest, UnpopGivesTheLastChainBack) {
  Virtqueue q = make(4);
  driver->add_chain(0, {{kData, 16, true}});
  driver->add_chain(1, {{kData + 0x100, 16, true}});
  auto a = q.pop(memory);
  auto b = q.pop(memory);
  ASSERT_TRUE(a.ok() && a->has_value() && b.ok() && b->has_value());
  EXPECT_FALSE(*q.has_available(memory));
  q.unpop(**b);
  q.unpop(**a);
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_TRUE(*q.has_available(memory));
  auto again = q.pop(memory);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->head(), 0) << "popped anew, in order, not refused as in flight";
}

TEST_F(VirtqueueTest, RestoreHoldsNothing) {
  Virtqueue q = make(4);
  driver->add_chain(0, {{kData, 16, true}});
  ASSERT_TRUE(q.pop(memory).ok());
  q.restore(Virtqueue::State{0, 0, 0, false});
  EXPECT_EQ(q.in_flight(), 0u);
  auto again = q.pop(memory);
  ASSERT_TRUE(again.ok() && again->has_value());
}

TEST(VirtioNeedEvent, MatchesTheSpecFormula) {
  // Notify iff event_idx in [old, new) (mod 2^16).
  EXPECT_TRUE(virtio_need_event(0, 1, 0));
  EXPECT_FALSE(virtio_need_event(1, 1, 0));
  EXPECT_TRUE(virtio_need_event(4, 7, 3));
  EXPECT_TRUE(virtio_need_event(6, 7, 3));
  EXPECT_FALSE(virtio_need_event(7, 7, 3));
  EXPECT_FALSE(virtio_need_event(2, 7, 3));
  EXPECT_TRUE(virtio_need_event(65535, 1, 65534));  // across the wrap
  EXPECT_TRUE(virtio_need_event(0, 1, 65534));
  EXPECT_FALSE(virtio_need_event(1, 1, 65534));
  EXPECT_FALSE(virtio_need_event(5, 5, 5));  // nothing new
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesWithoutEventIdx) {
  Virtqueue q = make();
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());
  EXPECT_TRUE(*q.needs_interrupt(memory));
  driver->set_avail_flags(virtio::kAvailFlagNoInterrupt);
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());
  EXPECT_FALSE(*q.needs_interrupt(memory));
}

TEST_F(VirtqueueTest, EventIdxSuppression) {
  Virtqueue q = make(16, feature_bit(virtio::kFeatureEventIdx));
  driver->set_avail_flags(virtio::kAvailFlagNoInterrupt);  // ignored with EVENT_IDX
  driver->set_used_event(0);
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // used idx 1
  EXPECT_TRUE(*q.needs_interrupt(memory));     // first one always goes out
  driver->set_used_event(3);                   // "interrupt me once entry 3 is used"
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // idx 2
  EXPECT_FALSE(*q.needs_interrupt(memory));
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // idx 3
  EXPECT_FALSE(*q.needs_interrupt(memory));
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // idx 4: crossed used_event 3
  EXPECT_TRUE(*q.needs_interrupt(memory));
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // idx 6, used_event still 3: already signalled past it
  EXPECT_FALSE(*q.needs_interrupt(memory));
  driver->set_used_event(5);  // batch of two since the last check covers 5
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());
  EXPECT_FALSE(*q.needs_interrupt(memory));  // signalled_used was 6; 5 is not in [6, 7)
  driver->set_used_event(7);
  ASSERT_TRUE(q.add_used(memory, 0, 0).ok());  // idx 8
  EXPECT_TRUE(*q.needs_interrupt(memory));
}

TEST_F(VirtqueueTest, EventIdxPublishesAvailEvent) {
  Virtqueue q = make(16, feature_bit(virtio::kFeatureEventIdx));
  driver->add_chain(0, {{kData, 16, true}});
  driver->add_chain(1, {{kData, 16, true}});
  ASSERT_TRUE(q.pop(memory).ok());
  EXPECT_EQ(driver->avail_event(), 1);
  ASSERT_TRUE(q.pop(memory).ok());
  EXPECT_EQ(driver->avail_event(), 2);
}

TEST_F(VirtqueueTest, NeverTouchesMemoryOutsideRamWhenRingsAreAtTheEdge) {
  // Rings ending exactly at the end of RAM are valid.
  VirtqueueLayout l{4, GuestAddress(kRam - 0x1000), GuestAddress(kRam - 0x1000 + 64),
                    GuestAddress(kRam - 40)};  // 38 bytes, 4-aligned, ends 2 bytes short of the end
  auto q = Virtqueue::create(memory, l, feature_bit(virtio::kFeatureEventIdx));
  ASSERT_TRUE(q.ok()) << q.error().message();
  ASSERT_TRUE(q->add_used(memory, 1, 2).ok());
  EXPECT_TRUE(q->needs_interrupt(memory).ok());
}

}  // namespace
}  // namespace hostvisor
