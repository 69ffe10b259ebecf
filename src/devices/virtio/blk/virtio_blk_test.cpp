// Drives virtio-blk the way a guest driver does: requests built in guest
// memory through the virtqueue test driver, against real raw and qcow2
// images from the block layer.
#include "devices/virtio/blk/virtio_blk.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "base/fd.h"
#include "block/disk_option.h"
#include "block/image_open.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"
#include "block/testing/scratch_dir.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

using namespace virtio_blk;
using Buffer = VirtqueueTestDriver::Buffer;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kRingBase = 0x1000;
constexpr uint64_t kHeaderAt = 0x10000;
constexpr uint64_t kDataAt = 0x20000;
constexpr uint64_t kStatusAt = 0x80000;
constexpr uint64_t kDiskBytes = 1 << 20;
constexpr uint64_t kDiskSectors = kDiskBytes / 512;

// A disk whose every I/O fails, as a dying host disk would.
class FailingDisk : public block::BlockDevice {
 public:
  const char* format_name() const override { return "failing"; }
  uint64_t virtual_size() const override { return kDiskBytes; }
  bool read_only() const override { return false; }
  Result<void> readv(uint64_t, std::span<const iovec>) override { return Error(ErrorCode::kIo, "EIO"); }
  Result<void> writev(uint64_t, std::span<const iovec>) override { return Error(ErrorCode::kIo, "EIO"); }
  Result<void> flush() override { return Error(ErrorCode::kIo, "EIO"); }
  Result<void> discard(uint64_t, uint64_t) override { return Error(ErrorCode::kIo, "EIO"); }
};

class VirtioBlkTest : public ::testing::Test {
 protected:
  void SetUp() override { memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value(); }

  std::shared_ptr<block::BlockDevice> open(const std::string& path, bool writable = true) {
    block::OpenOptions o;
    o.writable = writable;
    auto d = block::open_image(path, o);
    EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().message());
    return d.ok() ? std::shared_ptr<block::BlockDevice>(std::move(d).value()) : nullptr;
  }
  std::shared_ptr<block::BlockDevice> raw_disk(bool writable = true) {
    const std::string path = dir.file("disk.raw");
    EXPECT_TRUE(block::RawImage::create(path, kDiskBytes).ok());
    return open(path, writable);
  }
  std::shared_ptr<block::BlockDevice> qcow2_disk() {
    const std::string path = dir.file("disk.qcow2");
    block::Qcow2CreateOptions o;
    o.size = kDiskBytes;
    auto r = block::Qcow2Image::create(path, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    return open(path);
  }

  void start(std::shared_ptr<block::BlockDevice> disk, VirtioBlkOptions options = {}) {
    ASSERT_TRUE(disk);
    // A fresh driver: clean rings, descriptors from 0.
    ASSERT_TRUE(memory.fill(GuestAddress(kRingBase), 0, kHeaderAt - kRingBase).ok());
    next_desc = 0;
    device = std::make_unique<VirtioBlk>(std::move(disk), std::move(options));
    driver = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRingBase);
    features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    auto q = Virtqueue::create(memory, driver->layout(), features);
    ASSERT_TRUE(q.ok()) << q.error().message();
    queue[0] = std::move(q).value();
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queue, enabled, &interrupt}).ok());
  }

  void put_header(uint32_t type, uint64_t sector) {
    RequestHeader h{type, 0, sector};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt), h).ok());
    ASSERT_TRUE(memory.write_obj<uint8_t>(GuestAddress(kStatusAt), 0xee).ok());
  }

  // Makes `buffers` available as one chain, runs the device and, as the
  // event loop would, its completions until the request is answered;
  // returns the used element.
  VirtqueueTestDriver::UsedElement run(const std::vector<Buffer>& buffers) {
    const uint16_t before = driver->used_idx();
    driver->add_chain(next_desc, buffers);
    next_desc = static_cast<uint16_t>((next_desc + buffers.size()) % kQueueSize);
    EXPECT_TRUE(device->process_queue(0).ok());
    wait_answered(static_cast<uint16_t>(before + 1));
    if (driver->used_idx() == before) return {~0u, ~0u};
    return driver->used(before);
  }
  // Runs completions (up to 5 s) until the device has answered `count` requests in all.
  void wait_answered(uint16_t count) {
    for (int i = 0; i < 500 && driver->used_idx() != count; ++i) {
      pollfd p{device->completion_fd(), POLLIN, 0};
      ::poll(&p, 1, 10);
      device->process_completions();
    }
  }
  uint8_t status() { return memory.read_obj<uint8_t>(GuestAddress(kStatusAt)).value_or(0xff); }

  // A complete IN or OUT request of `bytes` at `sector` with data at kDataAt.
  uint8_t io(uint32_t type, uint64_t sector, uint32_t bytes) {
    put_header(type, sector);
    auto used = run({{kHeaderAt, 16, false}, {kDataAt, bytes, type == kRequestIn}, {kStatusAt, 1, true}});
    EXPECT_EQ(used.len, type == kRequestIn && status() == kStatusOk ? bytes + 1 : 1u);
    return status();
  }
  void fill_data(uint8_t seed, size_t n) {
    std::vector<uint8_t> d(n);
    for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed + i * 7);
    ASSERT_TRUE(memory.write(GuestAddress(kDataAt), d).ok());
  }
  std::vector<uint8_t> data(size_t n) {
    std::vector<uint8_t> d(n);
    EXPECT_TRUE(memory.read(GuestAddress(kDataAt), d).ok());
    return d;
  }
  void round_trip() {
    fill_data(3, 8192);
    const auto written = data(8192);
    ASSERT_EQ(io(kRequestOut, 100, 8192), kStatusOk);
    ASSERT_TRUE(memory.fill(GuestAddress(kDataAt), 0, 8192).ok());
    ASSERT_EQ(io(kRequestIn, 100, 8192), kStatusOk);
    EXPECT_EQ(data(8192), written);
    // The last sector of the disk is reachable, one more is not.
    ASSERT_EQ(io(kRequestOut, kDiskSectors - 1, 512), kStatusOk);
    EXPECT_EQ(io(kRequestOut, kDiskSectors, 512), kStatusIoError);
  }

  block::testing::ScratchDir dir;
  GuestMemory memory;
  std::unique_ptr<VirtioBlk> device;
  std::unique_ptr<VirtqueueTestDriver> driver;
  uint64_t features = 0;
  Virtqueue queue[1];
  bool enabled[1] = {true};
  RecordingVirtioInterrupt interrupt;
  uint16_t next_desc = 0;
};

TEST_F(VirtioBlkTest, ConfigSpaceDescribesTheDisk) {
  VirtioBlkOptions o;
  o.discard = true;
  start(raw_disk(), o);
  Config c{};
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.capacity, kDiskSectors);
  EXPECT_EQ(c.blk_size, 512u);
  EXPECT_EQ(c.seg_max, 256u - 2u);
  EXPECT_EQ(c.max_discard_seg, VirtioBlk::kMaxDiscardSegments);
  EXPECT_EQ(c.max_write_zeroes_sectors, VirtioBlk::kMaxWriteZeroesSectors);
  EXPECT_EQ(c.write_zeroes_may_unmap, 1);
  // Partial reads at an offset (a driver reads fields one by one).
  uint32_t blk_size = 0;
  device->read_config(20, std::span(reinterpret_cast<uint8_t*>(&blk_size), 4));
  EXPECT_EQ(blk_size, 512u);
  uint8_t beyond[4] = {1, 1, 1, 1};
  device->read_config(sizeof(Config) - 2, beyond);
  EXPECT_EQ(beyond[2], 0);
  const uint64_t f = device->device_features();
  for (unsigned bit : {kFeatureSegMax, kFeatureBlockSize, kFeatureFlush, kFeatureDiscard, kFeatureWriteZeroes})
    EXPECT_TRUE(f & virtio::feature_bit(bit)) << bit;
  EXPECT_FALSE(f & virtio::feature_bit(kFeatureReadOnly));
  EXPECT_EQ(device->device_type(), virtio::kDeviceBlock);
}

TEST_F(VirtioBlkTest, RawReadWriteRoundTrip) {
  start(raw_disk());
  round_trip();
  EXPECT_FALSE(interrupt.used.empty());
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBlkTest, Qcow2ReadWriteRoundTrip) {
  start(qcow2_disk());
  // Unwritten clusters read as zeros.
  fill_data(9, 4096);
  ASSERT_EQ(io(kRequestIn, 1000, 4096), kStatusOk);
  EXPECT_EQ(data(4096), std::vector<uint8_t>(4096, 0));
  round_trip();
}

TEST_F(VirtioBlkTest, WritesReachTheImageFile) {
  start(raw_disk());
  fill_data(42, 512);
  const auto written = data(512);
  ASSERT_EQ(io(kRequestOut, 7, 512), kStatusOk);
  put_header(kRequestFlush, 0);
  auto used = run({{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(used.len, 1u);
  EXPECT_EQ(status(), kStatusOk);
  // Reopen the image from its file: the data is there.
  device.reset();
  auto again = open(dir.file("disk.raw"), false);
  std::vector<uint8_t> back(512);
  ASSERT_TRUE(again->read(7 * 512, back.data(), back.size()).ok());
  EXPECT_EQ(back, written);
}

TEST_F(VirtioBlkTest, GetIdReturnsTheSerial) {
  VirtioBlkOptions o;
  o.serial = "hv-disk-0";
  start(raw_disk(), o);
  ASSERT_TRUE(memory.fill(GuestAddress(kDataAt), 0xaa, 32).ok());
  put_header(kRequestGetId, 0);
  auto used = run({{kHeaderAt, 16, false}, {kDataAt, 20, true}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusOk);
  EXPECT_EQ(used.len, 21u);
  auto id = data(20);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(id.data())), "hv-disk-0");
  EXPECT_EQ(id[19], 0);

  // A 20-character serial fills the buffer with no terminator; a longer one is cut.
  VirtioBlkOptions longer;
  longer.serial = "0123456789abcdefghijKLMN";
  start(raw_disk(), longer);
  put_header(kRequestGetId, 0);
  run({{kHeaderAt, 16, false}, {kDataAt, 20, true}, {kStatusAt, 1, true}});
  id = data(21);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(id.data()), 20), "0123456789abcdefghij");
  EXPECT_EQ(id[20], 0xaa);
}

TEST_F(VirtioBlkTest, WriteZeroesAndDiscard) {
  VirtioBlkOptions o;
  o.discard = true;
  for (bool qcow2 : {false, true}) {
    SCOPED_TRACE(qcow2 ? "qcow2" : "raw");
    start(qcow2 ? qcow2_disk() : raw_disk(), o);
    fill_data(1, 65536);
    ASSERT_EQ(io(kRequestOut, 0, 65536), kStatusOk);
    // Zero sectors [8, 16) and [64, 72) in one two-segment request.
    DiscardWriteZeroesSegment segs[2] = {{8, 8, 0}, {64, 8, kSegmentFlagUnmap}};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), segs).ok());
    put_header(kRequestWriteZeroes, 0);
    auto used = run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 32, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(used.len, 1u);
    ASSERT_EQ(status(), kStatusOk);
    ASSERT_EQ(io(kRequestIn, 0, 65536), kStatusOk);
    auto d = data(65536);
    for (size_t i = 0; i < 65536; ++i) {
      const bool zeroed = (i >= 8 * 512 && i < 16 * 512) || (i >= 64 * 512 && i < 72 * 512);
      ASSERT_EQ(d[i], zeroed ? 0 : static_cast<uint8_t>(1 + i * 7)) << i;
    }
    // Discard of sectors [0, 128) (64 KiB, a whole qcow2 cluster): accepted;
    // the data may read back either way, but must stay readable.
    DiscardWriteZeroesSegment discard{0, 128, 0};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), discard).ok());
    put_header(kRequestDiscard, 0);
    run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusOk);
    EXPECT_EQ(io(kRequestIn, 0, 65536), kStatusOk);
    // 5.2.6.2: UNMAP on a discard and unknown flags are UNSUPP.
    discard.flags = kSegmentFlagUnmap;
    ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), discard).ok());
    put_header(kRequestDiscard, 0);
    run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusUnsupported);
    discard.flags = 4;
    put_header(kRequestWriteZeroes, 0);
    ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), discard).ok());
    run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusUnsupported);
    // A segment past the end, and a payload that is not whole segments: IOERR.
    DiscardWriteZeroesSegment past{kDiskSectors - 4, 8, 0};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), past).ok());
    put_header(kRequestWriteZeroes, 0);
    run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusIoError);
    put_header(kRequestWriteZeroes, 0);
    run({{kHeaderAt, 16, false}, {kDataAt + 0x10000, 12, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusIoError);
  }
}

TEST_F(VirtioBlkTest, DiscardIsUnsupportedUnlessEnabled) {
  start(raw_disk());
  EXPECT_FALSE(device->device_features() & virtio::feature_bit(kFeatureDiscard));
  DiscardWriteZeroesSegment discard{0, 8, 0};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt), discard).ok());
  put_header(kRequestDiscard, 0);
  run({{kHeaderAt, 16, false}, {kDataAt, 16, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusUnsupported);
}

TEST_F(VirtioBlkTest, ReadOnlyDiskRejectsWrites) {
  auto disk = raw_disk();
  ASSERT_TRUE(disk->write(0, "original", 8).ok());
  VirtioBlkOptions o;
  o.read_only = true;
  o.discard = true;
  start(disk, o);
  EXPECT_TRUE(device->device_features() & virtio::feature_bit(kFeatureReadOnly));
  EXPECT_FALSE(device->device_features() & virtio::feature_bit(kFeatureWriteZeroes));
  fill_data(5, 512);
  EXPECT_EQ(io(kRequestOut, 0, 512), kStatusIoError);
  DiscardWriteZeroesSegment seg{0, 8, 0};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x1000), seg).ok());
  for (uint32_t type : {kRequestWriteZeroes, kRequestDiscard}) {
    put_header(type, 0);
    run({{kHeaderAt, 16, false}, {kDataAt + 0x1000, 16, false}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusIoError) << type;
  }
  // Nothing was written; reads still work.
  ASSERT_EQ(io(kRequestIn, 0, 512), kStatusOk);
  EXPECT_EQ(std::memcmp(data(8).data(), "original", 8), 0);
  // An image opened read-only is a read-only device without being told.
  start(open(dir.file("disk.raw"), false));
  EXPECT_TRUE(device->read_only());
  EXPECT_EQ(io(kRequestOut, 0, 512), kStatusIoError);
}

TEST_F(VirtioBlkTest, OutOfRangeAndOverflowingSectorsAreIoErrors) {
  start(raw_disk());
  EXPECT_EQ(io(kRequestIn, kDiskSectors, 512), kStatusIoError);
  EXPECT_EQ(io(kRequestIn, kDiskSectors - 1, 1024), kStatusIoError);
  // sector * 512 and sector + count wrap 64 bits: must not alias sector 0.
  EXPECT_EQ(io(kRequestIn, ~0ull, 512), kStatusIoError);
  EXPECT_EQ(io(kRequestIn, (~0ull >> 9) + 1, 512), kStatusIoError);
  EXPECT_EQ(io(kRequestOut, ~0ull - 1, 1024), kStatusIoError);
  // A zero-length read at the very end is fine.
  put_header(kRequestIn, kDiskSectors);
  run({{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusOk);
}

TEST_F(VirtioBlkTest, LengthNotAMultipleOf512IsAnIoError) {
  start(raw_disk());
  EXPECT_EQ(io(kRequestIn, 0, 511), kStatusIoError);
  EXPECT_EQ(io(kRequestOut, 0, 513), kStatusIoError);
}

TEST_F(VirtioBlkTest, UnknownTypeIsUnsupported) {
  start(raw_disk());
  for (uint32_t type : {2u, 3u, 10u, 14u, 0x80000000u}) {
    put_header(type, 0);
    auto used = run({{kHeaderAt, 16, false}, {kDataAt, 512, true}, {kStatusAt, 1, true}});
    EXPECT_EQ(status(), kStatusUnsupported) << type;
    EXPECT_EQ(used.len, 1u);
  }
}

TEST_F(VirtioBlkTest, HeaderSplitAcrossDescriptorsWorks) {
  start(raw_disk());
  fill_data(77, 1024);
  const auto written = data(1024);
  // Header in three pieces (4 + 5 + 7 bytes), data in two, status in its own.
  RequestHeader h{kRequestOut, 0, 12};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt), h).ok());
  auto used = run({{kHeaderAt, 4, false},
                   {kHeaderAt + 4, 5, false},
                   {kHeaderAt + 9, 7, false},
                   {kDataAt, 100, false},
                   {kDataAt + 100, 924, false},
                   {kStatusAt, 1, true}});
  ASSERT_EQ(status(), kStatusOk);
  EXPECT_EQ(used.len, 1u);
  // Header and first data bytes in one descriptor; data and status in one writable buffer.
  h = {kRequestIn, 0, 12};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt), h).ok());
  ASSERT_TRUE(memory.fill(GuestAddress(kDataAt), 0, 2048).ok());
  used = run({{kHeaderAt, 16, false}, {kDataAt, 1025, true}});
  EXPECT_EQ(used.len, 1025u);
  EXPECT_EQ(data(1024), written);
  EXPECT_EQ(memory.read_obj<uint8_t>(GuestAddress(kDataAt + 1024)).value(), kStatusOk);
}

TEST_F(VirtioBlkTest, MalformedButAnswerableRequestsGetIoError) {
  start(raw_disk());
  // Header shorter than 16 bytes.
  put_header(kRequestIn, 0);
  auto used = run({{kHeaderAt, 8, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  EXPECT_EQ(used.len, 1u);
  // Header device-writable (wrong direction): nothing readable at all.
  put_header(kRequestIn, 0);
  run({{kHeaderAt, 16, true}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  // Read whose data buffer is device-readable.
  put_header(kRequestIn, 0);
  run({{kHeaderAt, 16, false}, {kDataAt, 512, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  // Write whose data buffer is device-writable.
  put_header(kRequestOut, 0);
  run({{kHeaderAt, 16, false}, {kDataAt, 512, true}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  EXPECT_TRUE(interrupt.needs_reset.empty());
  // Still working afterwards.
  EXPECT_EQ(io(kRequestIn, 0, 512), kStatusOk);
}

TEST_F(VirtioBlkTest, MissingStatusByteNeedsReset) {
  start(raw_disk());
  put_header(kRequestOut, 0);
  const uint16_t before = driver->used_idx();
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kDataAt, 512, false}});
  EXPECT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), before);  // nothing to answer into
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_NE(interrupt.needs_reset[0].find("status"), std::string::npos) << interrupt.needs_reset[0];
  // The device stays stopped until the driver resets it.
  driver->add_chain(2, {{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  EXPECT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), before);
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
}

TEST_F(VirtioBlkTest, ReadOnlyStatusDescriptorNeedsReset) {
  start(raw_disk());
  put_header(kRequestFlush, 0);
  const uint16_t before = driver->used_idx();
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kStatusAt, 1, false}});
  EXPECT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), before);
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
  // After a reset and re-activation the device serves again.
  device->reset();
  start(raw_disk());
  EXPECT_EQ(io(kRequestIn, 0, 512), kStatusOk);
}

TEST_F(VirtioBlkTest, HostileChainNeedsReset) {
  start(raw_disk());
  // A buffer outside guest RAM: Virtqueue::pop refuses the chain.
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kRam - 8, 512, true}, {kStatusAt, 1, true}});
  EXPECT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
}

TEST_F(VirtioBlkTest, ImageIoErrorIsAnIoErrorStatusAndTheDeviceGoesOn) {
  start(std::make_shared<FailingDisk>());
  EXPECT_EQ(io(kRequestOut, 0, 512), kStatusIoError);
  put_header(kRequestIn, 0);
  run({{kHeaderAt, 16, false}, {kDataAt, 512, true}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  put_header(kRequestFlush, 0);
  run({{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  EXPECT_EQ(status(), kStatusIoError);
  EXPECT_TRUE(interrupt.needs_reset.empty());
  EXPECT_EQ(device->requests_completed(), 3u);
}

TEST_F(VirtioBlkTest, BatchedRequestsAndEventIdxInterrupts) {
  start(raw_disk());
  ASSERT_TRUE(features & virtio::feature_bit(virtio::kFeatureEventIdx));
  fill_data(0, 512 * 8);
  // Eight writes made available before one notification: one pass serves all.
  for (int i = 0; i < 8; ++i) {
    RequestHeader h{kRequestOut, 0, static_cast<uint64_t>(i)};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt + 16 * i), h).ok());
    driver->add_chain(
        static_cast<uint16_t>(3 * i),
        {{kHeaderAt + 16ull * i, 16, false}, {kDataAt + 512ull * i, 512, false}, {kStatusAt + i, 1, true}});
  }
  interrupt.used.clear();
  driver->set_used_event(100);  // the driver asks not to hear before used index 101
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_answered(8);
  EXPECT_EQ(driver->used_idx(), 8);
  EXPECT_EQ(interrupt.used.size(), 1u);  // the first interrupt after start is always sent
  driver->add_chain(30, {{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(interrupt.used.size(), 1u);  // suppressed by used_event
  driver->set_used_event(9);
  driver->add_chain(32, {{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(interrupt.used.size(), 2u);
}

// A driver that makes its one GET_ID request available again the moment the
// device writes the answer (a vCPU racing the device), for longer than a
// ring's worth: each turn answers at most a queue's worth, the rest comes on
// the turns the device reschedules, and each publication is answered once.
TEST_F(VirtioBlkTest, StormLargerThanTheQueueIsServedOverSeveralTurns) {
  start(raw_disk());
  constexpr int kRequests = 3 * kQueueSize + 9;
  int published = 0;
  auto publish = [&] {
    if (published == kRequests) return;
    ++published;
    driver->publish(0);
  };
  put_header(kRequestGetId, 0);
  driver->write_desc(0, kHeaderAt, 16, virtio::kDescFlagNext, 1);
  driver->write_desc(1, kDataAt, 20, virtio::kDescFlagNext | virtio::kDescFlagWrite, 2);
  driver->write_desc(2, kStatusAt, 1, virtio::kDescFlagWrite, 0);
  publish();
  // The status byte is the last thing the device writes before it returns the chain.
  memory.set_dma_write_observer([&](GuestAddress at, uint64_t) {
    if (at.value() == kStatusAt) publish();
  });
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), kQueueSize) << "one turn took more than the queue size";
  int turns = 1;
  while (driver->used_idx() < kRequests && testing::run_rescheduled_turn(*device)) ++turns;
  memory.set_dma_write_observer(nullptr);
  EXPECT_EQ(driver->used_idx(), kRequests);
  EXPECT_GE(turns, 4);
  EXPECT_EQ(device->requests_completed(), static_cast<uint64_t>(kRequests));
  for (uint16_t i = 0; i < kRequests; ++i) ASSERT_EQ(driver->used(i).id, 0u) << i;
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Waits (up to 5 s) until the device has answered `count` requests in all.
void wait_used(VirtioBlk& device, VirtqueueTestDriver& driver, uint16_t count) {
  for (int i = 0; i < 500 && driver.used_idx() != count; ++i) {
    pollfd p{device.completion_fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    device.process_completions();
  }
  ASSERT_EQ(driver.used_idx(), count) << "asynchronous requests did not complete";
}

TEST_F(VirtioBlkTest, AsynchronousReadsWritesAndFlush) {
  VirtioBlkOptions o;
  for (bool qcow2 : {false, true}) {
    SCOPED_TRACE(qcow2 ? "qcow2" : "raw");
    start(qcow2 ? qcow2_disk() : raw_disk(), o);
    ASSERT_GE(device->completion_fd(), 0);
    // Eight 4 KiB writes in one notification, answered as they complete.
    fill_data(11, 8 * 4096);
    const auto written = data(8 * 4096);
    for (int i = 0; i < 8; ++i) {
      RequestHeader h{kRequestOut, 0, static_cast<uint64_t>(i) * 8};
      ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt + 16 * i), h).ok());
      driver->add_chain(
          static_cast<uint16_t>(3 * i),
          {{kHeaderAt + 16ull * i, 16, false}, {kDataAt + 4096ull * i, 4096, false}, {kStatusAt + i, 1, true}});
    }
    ASSERT_TRUE(device->process_queue(0).ok());
    wait_used(*device, *driver, 8);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(memory.read_obj<uint8_t>(GuestAddress(kStatusAt + i)).value(), kStatusOk);
    // Flush, then read everything back in one request.
    put_header(kRequestFlush, 0);
    driver->add_chain(24, {{kHeaderAt, 16, false}, {kStatusAt, 1, true}});
    ASSERT_TRUE(device->process_queue(0).ok());
    wait_used(*device, *driver, 9);
    EXPECT_EQ(status(), kStatusOk);
    ASSERT_TRUE(memory.fill(GuestAddress(kDataAt), 0, 8 * 4096).ok());
    put_header(kRequestIn, 0);
    driver->add_chain(26, {{kHeaderAt, 16, false}, {kDataAt, 8 * 4096, true}, {kStatusAt, 1, true}});
    ASSERT_TRUE(device->process_queue(0).ok());
    wait_used(*device, *driver, 10);
    EXPECT_EQ(status(), kStatusOk);
    EXPECT_EQ(driver->used(9).len, 8u * 4096 + 1);
    EXPECT_EQ(data(8 * 4096), written);
    // Requests that fail validation are answered at once, without the event loop.
    put_header(kRequestIn, kDiskSectors);
    driver->add_chain(29, {{kHeaderAt, 16, false}, {kDataAt, 512, true}, {kStatusAt, 1, true}});
    ASSERT_TRUE(device->process_queue(0).ok());
    EXPECT_EQ(driver->used_idx(), 11);
    EXPECT_EQ(status(), kStatusIoError);
    device->reset();
  }
}

TEST_F(VirtioBlkTest, AsynchronousIoErrorAndResetWithRequestsInFlight) {
  VirtioBlkOptions o;
  start(std::make_shared<FailingDisk>(), o);
  put_header(kRequestIn, 0);
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kDataAt, 512, true}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used(*device, *driver, 1);
  EXPECT_EQ(status(), kStatusIoError);
  EXPECT_TRUE(interrupt.needs_reset.empty());

  // A reset waits for the requests in flight and drops their answers.
  auto disk = raw_disk();
  start(disk, o);
  for (int i = 0; i < 16; ++i) {
    RequestHeader h{kRequestIn, 0, static_cast<uint64_t>(i)};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt + 16 * i), h).ok());
    driver->add_chain(
        static_cast<uint16_t>(3 * i),
        {{kHeaderAt + 16ull * i, 16, false}, {kDataAt + 512ull * i, 512, true}, {kStatusAt + i, 1, true}});
  }
  ASSERT_TRUE(device->process_queue(0).ok());
  device->reset();
  EXPECT_EQ(disk->requests_in_flight(), 0u);
  device->process_completions();  // nothing left to answer, and no rings to answer into
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBlkTest, OpensWhatADiskOptionSays) {
  const std::string path = dir.file("opt.raw");
  ASSERT_TRUE(block::RawImage::create(path, kDiskBytes).ok());
  auto option = block::parse_disk_option(path + ",readonly=on");
  ASSERT_TRUE(option.ok()) << option.error().message();
  auto blk = VirtioBlk::open(*option, "serial-1");
  ASSERT_TRUE(blk.ok()) << blk.error().message();
  EXPECT_TRUE((*blk)->read_only());
  EXPECT_EQ((*blk)->capacity_sectors(), kDiskSectors);

  option = block::parse_disk_option(path + ",discard=on");
  ASSERT_TRUE(option.ok());
  blk = VirtioBlk::open(*option, "serial-2");
  ASSERT_TRUE(blk.ok());
  EXPECT_TRUE((*blk)->device_features() & virtio::feature_bit(kFeatureDiscard));

  option = block::parse_disk_option(dir.file("missing.qcow2"));
  ASSERT_TRUE(option.ok());
  blk = VirtioBlk::open(*option, "");
  ASSERT_FALSE(blk.ok());
  EXPECT_NE(blk.error().message().find("missing.qcow2"), std::string::npos) << blk.error().message();
}

TEST_F(VirtioBlkTest, PlugsIntoTheVirtioPciTransport) {
  auto pci = VirtioPciDevice::create(std::make_shared<VirtioBlk>(raw_disk(), VirtioBlkOptions{}), memory);
  ASSERT_TRUE(pci.ok()) << pci.error().message();
  uint64_t capacity = 0;
  (*pci)->bar_read(VirtioPciDevice::kBar, VirtioPciDevice::kDeviceCfgOffset,
                   std::span(reinterpret_cast<uint8_t*>(&capacity), 8));
  EXPECT_EQ(capacity, kDiskSectors);
  EXPECT_EQ((*pci)->config_read(2, 2), 0x1040u + virtio::kDeviceBlock);  // PCI device ID
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

using namespace virtio_blk;

// A real image behind a gate: submitted requests wait until the test
// releases them (in any order, as io_uring may finish them), then run on the
// image and complete at the next poll. Waiting polls (reset, destruction)
// release everything, as a disk eventually answers.
class GatedDisk : public block::BlockDevice {
 public:
  explicit GatedDisk(std::shared_ptr<block::BlockDevice> image) : image_(std::move(image)) {}
  const char* format_name() const override { return "gated"; }
  uint64_t virtual_size() const override { return image_->virtual_size(); }
  bool read_only() const override { return image_->read_only(); }
  Result<void> readv(uint64_t o, std::span<const iovec> v) override { return image_->readv(o, v); }
  Result<void> writev(uint64_t o, std::span<const iovec> v) override { return image_->writev(o, v); }
  Result<void> flush() override { return image_->flush(); }
  Result<void> discard(uint64_t o, uint64_t l) override { return image_->discard(o, l); }
  Result<void> write_zeroes(uint64_t o, uint64_t l) override { return image_->write_zeroes(o, l); }

  void submit(block::BlockRequest request, block::BlockCompletion done) override {
    submitted.push_back(request.op);
    held_.push_back(Held{static_cast<int>(submitted.size() - 1), std::move(request), std::move(done)});
  }
  void poll_completions(bool wait) override {
    if (wait && ready_.empty())
      while (!held_.empty()) release(held_.front().id);
    auto ready = std::move(ready_);
    ready_.clear();
    for (auto& [done, result] : ready) done(std::move(result));
  }
  int notify_fd() override { return notify_.fd(); }
  size_t requests_in_flight() const override { return held_.size() + ready_.size(); }

  // Runs the `id`-th submitted request on the image now; false if it is not held.
  bool release(int id) {
    auto it = std::find_if(held_.begin(), held_.end(), [id](const Held& h) { return h.id == id; });
    if (it == held_.end()) return false;
    Held h = std::move(*it);
    held_.erase(it);
    Result<void> result = ok();
    switch (h.request.op) {
      case block::BlockOp::kRead: result = image_->readv(h.request.offset, h.request.iov); break;
      case block::BlockOp::kWrite: result = image_->writev(h.request.offset, h.request.iov); break;
      case block::BlockOp::kFlush: result = image_->flush(); break;
      case block::BlockOp::kDiscard: result = image_->discard(h.request.offset, h.request.length); break;
      case block::BlockOp::kWriteZeroes: result = image_->write_zeroes(h.request.offset, h.request.length); break;
    }
    if (fail_next) {
      result = Error(ErrorCode::kIo, "gated disk: injected EIO");
      fail_next = false;
    }
    executed.push_back(h.id);
    ready_.emplace_back(std::move(h.done), std::move(result));
    notify_.signal();
    return true;
  }
  size_t held() const { return held_.size(); }

  std::vector<block::BlockOp> submitted;  // in submission order; ids index this
  std::vector<int> executed;              // ids, in the order they ran on the image
  bool fail_next = false;

 private:
  struct Held {
    int id;
    block::BlockRequest request;
    block::BlockCompletion done;
  };
  std::shared_ptr<block::BlockDevice> image_;
  EventFd notify_ = std::move(EventFd::create(0, EFD_NONBLOCK)).value();
  std::vector<Held> held_;
  std::vector<std::pair<block::BlockCompletion, Result<void>>> ready_;
};

void answer_completions(VirtioBlk& device) { device.process_completions(); }

class VirtioBlkAsyncTest : public VirtioBlkTest {
 protected:
  std::shared_ptr<GatedDisk> gated() {
    auto disk = std::make_shared<GatedDisk>(raw_disk());
    VirtioBlkOptions o;
    o.write_zeroes = true;
    o.discard = true;
    start(disk, o);
    return disk;
  }
  // Request i: header at kHeaderAt + 16 i, 512 bytes of data at kDataAt + 512 i, status at kStatusAt + i,
  // descriptors 3 i .. 3 i + 2 (a flush uses two).
  void add_request(int i, uint32_t type, uint64_t sector) {
    RequestHeader h{type, 0, sector};
    ASSERT_TRUE(memory.write_obj(GuestAddress(kHeaderAt + 16 * i), h).ok());
    ASSERT_TRUE(memory.write_obj<uint8_t>(GuestAddress(kStatusAt + i), 0xee).ok());
    const uint16_t head = static_cast<uint16_t>(3 * i);
    if (type == kRequestFlush) {
      driver->add_chain(head, {{kHeaderAt + 16ull * i, 16, false}, {kStatusAt + i, 1, true}});
    } else {
      driver->add_chain(head, {{kHeaderAt + 16ull * i, 16, false},
                               {kDataAt + 512ull * i, 512, type == kRequestIn},
                               {kStatusAt + i, 1, true}});
    }
  }
  // Heads of the used ring, in the order the device answered.
  std::vector<uint32_t> answered() {
    std::vector<uint32_t> heads;
    for (uint16_t i = 0; i < driver->used_idx(); ++i) heads.push_back(driver->used(i).id);
    return heads;
  }
  uint8_t status_of(int i) { return memory.read_obj<uint8_t>(GuestAddress(kStatusAt + i)).value_or(0xff); }
};

TEST_F(VirtioBlkAsyncTest, FlushWaitsForEveryEarlierWriteButNotForLaterOnes) {
  auto disk = gated();
  fill_data(5, 4 * 512);
  add_request(0, kRequestOut, 10);
  add_request(1, kRequestOut, 11);
  add_request(2, kRequestFlush, 0);
  add_request(3, kRequestOut, 12);
  ASSERT_TRUE(device->process_queue(0).ok());
  // The flush is held back; the write after it is not.
  using Op = block::BlockOp;
  EXPECT_EQ(disk->submitted, (std::vector<Op>{Op::kWrite, Op::kWrite, Op::kWrite}));
  EXPECT_EQ(driver->used_idx(), 0);

  ASSERT_TRUE(disk->release(1));  // the second write finishes first
  answer_completions(*device);
  EXPECT_EQ(answered(), (std::vector<uint32_t>{3}));
  ASSERT_TRUE(disk->release(2));  // the write after the flush does not free it
  answer_completions(*device);
  EXPECT_EQ(disk->submitted.size(), 3u);
  ASSERT_TRUE(disk->release(0));  // the last write before it: now the flush goes
  answer_completions(*device);
  EXPECT_EQ(answered(), (std::vector<uint32_t>{3, 9, 0}));
  ASSERT_EQ(disk->submitted, (std::vector<Op>{Op::kWrite, Op::kWrite, Op::kWrite, Op::kFlush}));
  EXPECT_EQ(driver->used_idx(), 3);  // the flush is not answered before it ran
  ASSERT_TRUE(disk->release(3));
  answer_completions(*device);
  EXPECT_EQ(answered(), (std::vector<uint32_t>{3, 9, 0, 6}));
  EXPECT_EQ(status_of(2), kStatusOk);
  // On the image, the flush ran after both writes before it.
  EXPECT_EQ(disk->executed, (std::vector<int>{1, 2, 0, 3}));
}

// A disk that stops answering (a hung NFS mount, a dying drive) holds the
// requests the guest made available, never more, and never holds up the
// thread that takes the notifies (the event loop): it goes on at once.
TEST_F(VirtioBlkAsyncTest, AStalledDiskNeverBlocksTheNotifyAndHoldsOnlyTheRingsRequests) {
  auto disk = gated();
  constexpr int kRequests = kQueueSize / 3;
  for (int i = 0; i < kRequests; ++i) add_request(i, kRequestIn, static_cast<uint64_t>(i));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(device->process_queue(0).ok());
  for (int k = 0; k < 100; ++k) ASSERT_TRUE(device->process_queue(0).ok());  // the guest notifies on and on
  answer_completions(*device);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(disk->held(), static_cast<size_t>(kRequests));
  EXPECT_EQ(disk->submitted.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(driver->used_idx(), 0);
  // The disk comes back: each request is answered, once.
  for (int i = kRequests - 1; i >= 0; --i) ASSERT_TRUE(disk->release(i));
  answer_completions(*device);
  EXPECT_EQ(driver->used_idx(), kRequests);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(status_of(i), kStatusOk) << i;
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBlkAsyncTest, FlushWithNothingInFlightGoesAtOnceAndFlushesQueueInOrder) {
  auto disk = gated();
  add_request(0, kRequestFlush, 0);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(disk->submitted, (std::vector<block::BlockOp>{block::BlockOp::kFlush}));
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);
  EXPECT_EQ(status_of(0), kStatusOk);
  // write, flush, write, flush: the second flush waits for the second write only.
  add_request(1, kRequestOut, 1);
  add_request(2, kRequestFlush, 0);
  add_request(3, kRequestOut, 2);
  add_request(4, kRequestFlush, 0);
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_EQ(disk->submitted.size(), 3u);  // flush, write, write
  ASSERT_TRUE(disk->release(2));          // the second write
  answer_completions(*device);
  EXPECT_EQ(disk->submitted.size(), 3u);  // the first flush still waits for the first write
  ASSERT_TRUE(disk->release(1));
  answer_completions(*device);
  using Op = block::BlockOp;
  EXPECT_EQ(disk->submitted, (std::vector<Op>{Op::kFlush, Op::kWrite, Op::kWrite, Op::kFlush, Op::kFlush}));
}

TEST_F(VirtioBlkAsyncTest, MultiSegmentWriteZeroesIsAnsweredWhenEverySegmentFinished) {
  auto disk = gated();
  fill_data(9, 65536);
  // Synchronous-looking write through the gate: submit, release, answer.
  put_header(kRequestOut, 0);
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kDataAt, 65536, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);
  ASSERT_EQ(status(), kStatusOk);

  DiscardWriteZeroesSegment segs[3] = {{8, 8, 0}, {20, 0, 0}, {64, 8, kSegmentFlagUnmap}};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), segs).ok());
  put_header(kRequestWriteZeroes, 0);
  driver->add_chain(3, {{kHeaderAt, 16, false}, {kDataAt + 0x10000, 48, false}, {kStatusAt, 1, true}});
  add_request(5, kRequestFlush, 0);
  ASSERT_TRUE(device->process_queue(0).ok());
  using Op = block::BlockOp;
  // Two non-empty segments, two block requests; the flush waits for both.
  EXPECT_EQ(disk->submitted, (std::vector<Op>{Op::kWrite, Op::kWriteZeroes, Op::kWriteZeroes}));
  ASSERT_TRUE(disk->release(2));
  answer_completions(*device);
  EXPECT_EQ(driver->used_idx(), 1);  // one segment left: not answered, flush not sent
  EXPECT_EQ(disk->submitted.size(), 3u);
  ASSERT_TRUE(disk->release(1));
  answer_completions(*device);
  EXPECT_EQ(driver->used_idx(), 2);
  EXPECT_EQ(status(), kStatusOk);
  EXPECT_EQ(disk->submitted.back(), Op::kFlush);
  ASSERT_TRUE(disk->release(3));
  answer_completions(*device);
  EXPECT_EQ(status_of(5), kStatusOk);

  // Read back through the device: the two ranges are zeros, the rest is the data.
  ASSERT_TRUE(memory.fill(GuestAddress(kDataAt), 0xaa, 65536).ok());
  put_header(kRequestIn, 0);
  driver->add_chain(20, {{kHeaderAt, 16, false}, {kDataAt, 65536, true}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_TRUE(disk->release(4));
  answer_completions(*device);
  ASSERT_EQ(status(), kStatusOk);
  auto d = data(65536);
  for (size_t i = 0; i < 65536; ++i) {
    const bool zeroed = (i >= 8 * 512 && i < 16 * 512) || (i >= 64 * 512 && i < 72 * 512);
    ASSERT_EQ(d[i], zeroed ? 0 : static_cast<uint8_t>(9 + i * 7)) << i;
  }

  // One failing segment makes the whole request IOERR; the device goes on.
  put_header(kRequestWriteZeroes, 0);
  driver->add_chain(23, {{kHeaderAt, 16, false}, {kDataAt + 0x10000, 48, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  disk->fail_next = true;
  ASSERT_TRUE(disk->release(5));
  ASSERT_TRUE(disk->release(6));
  answer_completions(*device);
  EXPECT_EQ(status(), kStatusIoError);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioBlkAsyncTest, HostileAndMalformedChainsNextToRequestsInFlight) {
  auto disk = gated();
  add_request(0, kRequestOut, 0);
  // Header in a device-writable buffer: answerable, IOERR at once, not submitted.
  ASSERT_TRUE(memory.write_obj<uint8_t>(GuestAddress(kStatusAt + 1), 0xee).ok());
  driver->add_chain(3, {{kHeaderAt, 16, true}, {kStatusAt + 1, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(answered(), (std::vector<uint32_t>{3}));
  EXPECT_EQ(status_of(1), kStatusIoError);
  EXPECT_EQ(disk->submitted.size(), 1u);
  // A chain with no writable status byte: the device needs a reset, and the
  // write in flight is not answered into rings the driver is about to reset.
  driver->add_chain(6, {{kHeaderAt, 16, false}, {kDataAt, 512, false}});
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);
  EXPECT_EQ(driver->used_idx(), 1);
  // A reset waits for what is in flight and serves again afterwards.
  add_request(3, kRequestOut, 1);
  device->reset();
  EXPECT_EQ(disk->requests_in_flight(), 0u);
}

TEST_F(VirtioBlkAsyncTest, FlushIsAnsweredAfterEveryEarlierWriteOnTheRealBlockLayer) {
  VirtioBlkOptions o;
  for (bool qcow2 : {false, true}) {
    SCOPED_TRACE(qcow2 ? "qcow2" : "raw");
    start(qcow2 ? qcow2_disk() : raw_disk(), o);
    fill_data(7, 20 * 512);
    // 8 writes, a flush, 8 writes, a flush, in one notification.
    for (int i = 0; i < 18; ++i) add_request(i, i == 8 || i == 17 ? kRequestFlush : kRequestOut, 64ull * i);
    ASSERT_TRUE(device->process_queue(0).ok());
    wait_used(*device, *driver, 18);
    const auto order = answered();
    auto position = [&](int request) {
      return std::find(order.begin(), order.end(), static_cast<uint32_t>(3 * request)) - order.begin();
    };
    for (int i = 0; i < 8; ++i) EXPECT_LT(position(i), position(8)) << "write " << i << " answered after the flush";
    for (int i = 9; i < 17; ++i) EXPECT_LT(position(i), position(17)) << "write " << i;
    for (int i = 0; i < 18; ++i) EXPECT_EQ(status_of(i), kStatusOk) << i;
    device->reset();
  }
}

// A host-side failure is the request's, not the device's: IOERR for it, and
// the requests after it are served as usual.
TEST_F(VirtioBlkAsyncTest, HostIoErrorIsAnIoErrorAndLaterRequestsAreServed) {
  auto disk = gated();
  fill_data(21, 2 * 512);
  add_request(0, kRequestOut, 4);
  ASSERT_TRUE(device->process_queue(0).ok());
  disk->fail_next = true;
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);
  EXPECT_EQ(status_of(0), kStatusIoError);
  EXPECT_TRUE(interrupt.needs_reset.empty());
  add_request(1, kRequestOut, 5);
  add_request(2, kRequestIn, 5);
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_TRUE(disk->release(1));
  ASSERT_TRUE(disk->release(2));
  answer_completions(*device);
  EXPECT_EQ(status_of(1), kStatusOk);
  EXPECT_EQ(status_of(2), kStatusOk);
  EXPECT_EQ(answered(), (std::vector<uint32_t>{0, 3, 6}));
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// A storm of one head made available again and again while its write is in
// flight: the device refuses the reuse as guest misuse (DEVICE_NEEDS_RESET),
// submits the request once and, stopped, answers nothing into the rings the
// driver is about to reset: never twice.
TEST_F(VirtioBlkAsyncTest, StormOfAHeadReusedWhileInFlightNeedsResetAndIsNeverAnsweredTwice) {
  auto disk = gated();
  add_request(0, kRequestOut, 0);
  for (int i = 0; i < 5; ++i) driver->publish(0);
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_NE(interrupt.needs_reset[0].find("still holds it"), std::string::npos) << interrupt.needs_reset[0];
  EXPECT_EQ(disk->submitted.size(), 1u);
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), 0);
  EXPECT_EQ(disk->submitted.size(), 1u);
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
}

// A head made available again while in flight, but reached by the device
// only after its answer went out, cannot be told from a new request: it is
// served as one. Each publication is answered once.
TEST_F(VirtioBlkAsyncTest, HeadReusedAfterItsAnswerIsAFreshRequest) {
  auto disk = gated();
  fill_data(1, 512);
  add_request(0, kRequestOut, 0);
  ASSERT_TRUE(device->process_queue(0).ok());
  driver->publish(0);  // made available again while in flight ...
  ASSERT_TRUE(disk->release(0));
  answer_completions(*device);  // ... but answered before the device looks at the ring again
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_TRUE(disk->release(1));
  answer_completions(*device);
  EXPECT_EQ(answered(), (std::vector<uint32_t>{0, 0}));
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Like an event loop: process_completions() only when completion_fd() says
// so. A request the block layer queued but never handed to the kernel
// (io_uring batches until the next poll) would leave the fd quiet forever.
void wait_used_event_driven(VirtioBlk& device, VirtqueueTestDriver& driver, uint16_t count) {
  while (driver.used_idx() != count) {
    pollfd p{device.completion_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no completion signalled for 5 s with " << driver.used_idx() << " of " << count
                                      << " requests answered";
    device.process_completions();
  }
}

TEST_F(VirtioBlkAsyncTest, HeldFlushIsHandedToTheDiskWithoutAnotherNotification) {
  VirtioBlkOptions o;
  for (bool qcow2 : {false, true}) {
    SCOPED_TRACE(qcow2 ? "qcow2" : "raw");
    start(qcow2 ? qcow2_disk() : raw_disk(), o);
    fill_data(3, 4 * 512);
    add_request(0, kRequestOut, 8);
    add_request(1, kRequestFlush, 0);
    ASSERT_TRUE(device->process_queue(0).ok());
    wait_used_event_driven(*device, *driver, 2);
    EXPECT_EQ(status_of(0), kStatusOk);
    EXPECT_EQ(status_of(1), kStatusOk);
    device->reset();
  }
}

// WRITE_ZEROES with UNMAP may free the blocks (a hole punch); without it
// the raw image zeroes them in place, keeping them allocated.
TEST_F(VirtioBlkAsyncTest, WriteZeroesUnmapFlagChoosesPunchOrZeroInPlace) {
  const std::string path = dir.file("alloc.raw");
  ASSERT_TRUE(block::RawImage::create(path, kDiskBytes).ok());
  VirtioBlkOptions o;
  start(open(path), o);
  auto allocated_blocks = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_blocks;
  };
  // 64 KiB of data at sector 0 and at sector 256, then zero both, one with UNMAP.
  fill_data(1, 65536);
  put_header(kRequestOut, 0);
  driver->add_chain(0, {{kHeaderAt, 16, false}, {kDataAt, 65536, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 1);
  put_header(kRequestOut, 256);
  driver->add_chain(3, {{kHeaderAt, 16, false}, {kDataAt, 65536, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 2);
  const auto written = allocated_blocks();
  ASSERT_GE(written, 2 * 65536 / 512);
  DiscardWriteZeroesSegment in_place{0, 128, 0};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), in_place).ok());
  put_header(kRequestWriteZeroes, 0);
  driver->add_chain(6, {{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 3);
  ASSERT_EQ(status(), kStatusOk);
  EXPECT_EQ(allocated_blocks(), written) << "write-zeroes without UNMAP deallocated";
  DiscardWriteZeroesSegment unmap{256, 128, kSegmentFlagUnmap};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt + 0x10000), unmap).ok());
  put_header(kRequestWriteZeroes, 0);
  driver->add_chain(9, {{kHeaderAt, 16, false}, {kDataAt + 0x10000, 16, false}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 4);
  ASSERT_EQ(status(), kStatusOk);
  EXPECT_LE(allocated_blocks(), written - 65536 / 512) << "write-zeroes with UNMAP kept the blocks";
  // Both read back as zeros.
  fill_data(9, 65536);
  put_header(kRequestIn, 0);
  driver->add_chain(12, {{kHeaderAt, 16, false}, {kDataAt, 65536, true}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 5);
  EXPECT_EQ(data(65536), std::vector<uint8_t>(65536, 0));
  put_header(kRequestIn, 256);
  driver->add_chain(15, {{kHeaderAt, 16, false}, {kDataAt, 65536, true}, {kStatusAt, 1, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  wait_used_event_driven(*device, *driver, 6);
  EXPECT_EQ(data(65536), std::vector<uint8_t>(65536, 0));
}

}  // namespace
}  // namespace hostvisor
