// virtio-fs against a fake guest driver: FUSE requests in guest memory on
// the two queues, answered by the worker pool into the guest's buffers;
// a flood is held in the ring (at most kMaxInFlight taken), and a reset in
// the middle of work leaves nothing behind.
#include "devices/virtio/fs/virtio_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fuse.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

constexpr uint16_t kQueueSize = 256;
constexpr uint64_t kRam = 16ull << 20;
constexpr uint64_t kRings[2] = {0x10000, 0x20000};
constexpr uint64_t kRequests = 0x100000;  // one 8 KiB slot per descriptor pair
constexpr uint64_t kSlot = 0x2000;

class VirtioFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hv-virtio-fs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    std::ofstream(dir / "file") << "shared bytes";
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    auto server = fs::FuseServer::open(dir.string(), {});
    ASSERT_TRUE(server.ok()) << server.error().message();
    device =
        std::make_unique<VirtioFs>(std::move(server).value(), VirtioFsOptions{.tag = "work", .queue_size = kQueueSize});
    const uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    for (int q = 0; q < 2; ++q) {
      drivers[q] = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRings[q]);
      queues[q] = std::move(Virtqueue::create(memory, drivers[q]->layout(), features)).value();
    }
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }
  void TearDown() override {
    device.reset();
    std::filesystem::remove_all(dir);
  }

  // Puts one request (header + args) on `queue`, with `reply_room` writable bytes; returns its head.
  uint16_t post(int queue, uint32_t opcode, uint64_t nodeid, const std::vector<uint8_t>& args, uint32_t reply_room,
                bool notify = true) {
    const uint16_t head = static_cast<uint16_t>((posted[queue] * 2) % kQueueSize);
    const uint64_t at = kRequests + (queue * kQueueSize + posted[queue] % (kQueueSize / 2)) * kSlot;
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof h + args.size());
    h.opcode = opcode;
    h.unique = 1000 + posted[queue];
    h.nodeid = nodeid;
    EXPECT_TRUE(memory.write_obj(GuestAddress(at), h).ok());
    EXPECT_TRUE(memory.write(GuestAddress(at + sizeof h), args).ok());
    std::vector<VirtqueueTestDriver::Buffer> buffers{{at, h.len, false}};
    if (reply_room) buffers.push_back({at + 0x1000, reply_room, true});
    drivers[queue]->add_chain(head, buffers);
    ++posted[queue];
    if (notify) EXPECT_TRUE(device->process_queue(static_cast<uint16_t>(queue)).ok());
    return head;
  }
  // Waits until `count` chains of `queue` are used.
  bool wait_used(int queue, uint16_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (drivers[queue]->used_idx() != count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  fuse_out_header reply_header(uint16_t head, int queue = 1) {
    const uint64_t at = kRequests + (queue * kQueueSize + (head / 2) % (kQueueSize / 2)) * kSlot + 0x1000;
    return memory.read_obj<fuse_out_header>(GuestAddress(at)).value();
  }
  template <typename T>
  static std::vector<uint8_t> bytes(const T& v) {
    std::vector<uint8_t> out(sizeof v);
    std::memcpy(out.data(), &v, sizeof v);
    return out;
  }
  static std::vector<uint8_t> name(const std::string& s) {
    std::vector<uint8_t> out(s.begin(), s.end());
    out.push_back(0);
    return out;
  }
  void init() {
    fuse_init_in in{};
    in.major = 7;
    in.minor = 31;
    const uint16_t head = post(1, FUSE_INIT, 0, bytes(in), 256);
    ASSERT_TRUE(wait_used(1, static_cast<uint16_t>(posted[1])));
    EXPECT_EQ(reply_header(head).error, 0);
  }

  std::filesystem::path dir;
  GuestMemory memory;
  std::unique_ptr<VirtioFs> device;
  std::unique_ptr<VirtqueueTestDriver> drivers[2];
  Virtqueue queues[2];
  bool enabled[2] = {true, true};
  RecordingVirtioInterrupt interrupt;
  uint32_t posted[2] = {0, 0};
};

TEST_F(VirtioFsTest, ConfigHoldsTheTagAndOneRequestQueue) {
  virtio_fs::Config c{};
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(std::string(c.tag), "work");
  EXPECT_EQ(c.num_request_queues, 1u);
  EXPECT_EQ(device->device_type(), 26u);
  EXPECT_EQ(device->queue_count(), 2u);
}

TEST_F(VirtioFsTest, RequestsAreAnsweredIntoTheGuestsBuffers) {
  init();
  const uint16_t head = post(1, FUSE_LOOKUP, 1, name("file"), 512);
  ASSERT_TRUE(wait_used(1, 2));
  const auto used = drivers[1]->used(1);
  EXPECT_EQ(used.id, head);
  EXPECT_EQ(used.len, sizeof(fuse_out_header) + sizeof(fuse_entry_out));
  const auto h = reply_header(head);
  EXPECT_EQ(h.error, 0);
  EXPECT_EQ(h.unique, 1001u);
  // FORGET on the high-priority queue: served at once, no reply bytes.
  fuse_forget_in forget{1};
  post(0, FUSE_FORGET, 2, bytes(forget), 0);
  EXPECT_EQ(drivers[0]->used_idx(), 1u);
  EXPECT_EQ(drivers[0]->used(0).len, 0u);
  // A reply with no room for even its header is given back empty.
  post(1, FUSE_LOOKUP, 1, name("file"), 0);
  ASSERT_TRUE(wait_used(1, 3));
  EXPECT_EQ(drivers[1]->used(2).len, 0u);
}

TEST_F(VirtioFsTest, AFloodStaysInTheRingAndIsAllAnswered) {
  init();
  // 120 requests made available at once, one notify.
  for (int i = 0; i < 120; ++i) post(1, FUSE_LOOKUP, 1, name("missing" + std::to_string(i)), 256, false);
  ASSERT_TRUE(device->process_queue(1).ok());
  ASSERT_TRUE(wait_used(1, 121));
  EXPECT_LE(device->peak_in_flight(), VirtioFs::kMaxInFlight);
  for (uint16_t i = 1; i < 121; ++i) {
    const auto used = drivers[1]->used(i);
    const auto h = reply_header(static_cast<uint16_t>(used.id));
    EXPECT_EQ(h.error, -ENOENT);
  }
}

// A guest that offers huge buffers gets no huge host buffers: a request is
// read up to FuseServer::kMaxRequest (a longer one is refused from its
// header) and a reply never outgrows FuseServer::kMaxReply, whatever room
// the guest gives.
TEST_F(VirtioFsTest, HugeRequestsAndRepliesAreCutToTheServersBounds) {
  init();
  constexpr uint64_t kBigIn = 0x600000, kBigOut = 0xA00000;
  constexpr uint32_t kFourMiB = 4u << 20;
  std::ofstream(dir / "big") << std::string(1u << 20, 'b');
  // A chain of hand-made buffers, in the next free head.
  auto post_big = [&](const fuse_in_header& h, const std::vector<uint8_t>& args, uint32_t readable) {
    const uint16_t head = static_cast<uint16_t>((posted[1] * 2) % kQueueSize);
    EXPECT_TRUE(memory.write_obj(GuestAddress(kBigIn), h).ok());
    EXPECT_TRUE(memory.write(GuestAddress(kBigIn + sizeof h), args).ok());
    drivers[1]->add_chain(head, {{kBigIn, readable, false}, {kBigOut, kFourMiB, true}});
    ++posted[1];
    EXPECT_TRUE(device->process_queue(1).ok());
    EXPECT_TRUE(wait_used(1, static_cast<uint16_t>(posted[1])));
    return drivers[1]->used(static_cast<uint16_t>(posted[1] - 1));
  };
  auto reply_at_big_out = [&]() { return memory.read_obj<fuse_out_header>(GuestAddress(kBigOut)).value(); };

  // The 1 MiB file, looked up and opened.
  fuse_in_header h{};
  h.opcode = FUSE_LOOKUP;
  h.unique = 7;
  h.nodeid = 1;
  h.len = static_cast<uint32_t>(sizeof h + 4);
  auto used = post_big(h, name("big"), h.len);
  ASSERT_EQ(reply_at_big_out().error, 0);
  const uint64_t big = memory.read_obj<fuse_entry_out>(GuestAddress(kBigOut + sizeof(fuse_out_header))).value().nodeid;
  fuse_open_in open{};
  open.flags = O_RDWR;
  h = {.len = static_cast<uint32_t>(sizeof h + sizeof open), .opcode = FUSE_OPEN, .unique = 8, .nodeid = big};
  used = post_big(h, bytes(open), h.len);
  ASSERT_EQ(reply_at_big_out().error, 0);
  const uint64_t fh = memory.read_obj<fuse_open_out>(GuestAddress(kBigOut + sizeof(fuse_out_header))).value().fh;
  // A 4 MiB WRITE: refused, and nothing written.
  fuse_write_in write{};
  write.fh = fh;
  write.size = kFourMiB;
  h = {.len = static_cast<uint32_t>(sizeof h + sizeof write + kFourMiB),
       .opcode = FUSE_WRITE,
       .unique = 9,
       .nodeid = big};
  used = post_big(h, bytes(write), h.len);
  EXPECT_EQ(reply_at_big_out().error, -EINVAL);
  EXPECT_EQ(std::filesystem::file_size(dir / "big"), 1u << 20);

  // A 4 MiB READ into 4 MiB of room: kMaxIo bytes come back.
  fuse_read_in read{};
  read.fh = fh;
  read.size = kFourMiB;
  h = {.len = static_cast<uint32_t>(sizeof h + sizeof read), .opcode = FUSE_READ, .unique = 10, .nodeid = big};
  used = post_big(h, bytes(read), h.len);
  EXPECT_EQ(reply_at_big_out().error, 0);
  EXPECT_EQ(used.len, sizeof(fuse_out_header) + fs::FuseServer::kMaxIo);
  EXPECT_LE(used.len, fs::FuseServer::kMaxReply);
}

TEST_F(VirtioFsTest, AResetInTheMiddleOfWorkDropsTheSession) {
  init();
  for (int i = 0; i < 60; ++i) post(1, FUSE_LOOKUP, 1, name("file"), 256, false);
  ASSERT_TRUE(device->process_queue(1).ok());
  device->reset();
  const uint16_t used = drivers[1]->used_idx();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(drivers[1]->used_idx(), used) << "nothing is answered after the reset";
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioFsTest, SnapshotsAreRefusedWithAClearMessage) {
  auto quiesced = device->quiesce();
  ASSERT_FALSE(quiesced.ok());
  EXPECT_NE(quiesced.error().message().find("cannot be snapshotted"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
