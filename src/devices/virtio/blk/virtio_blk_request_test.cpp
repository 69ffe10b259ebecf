// Parsing virtio-blk chains into typed requests, with no disk at all: what a
// request asks for, and what the device answers at once.
#include "devices/virtio/blk/virtio_blk_request.h"

#include <gtest/gtest.h>

#include <vector>

namespace hostvisor {
namespace {

using namespace virtio_blk;

constexpr uint64_t kRam = 1 << 16;
constexpr uint64_t kHeaderAt = 0x1000, kDataAt = 0x2000, kStatusAt = 0x8000;

class VirtioBlkRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    limits.capacity_sectors = 64;
    limits.discard = limits.write_zeroes = true;
    limits.max_discard_sectors = limits.max_write_zeroes_sectors = 16;
    limits.max_discard_segments = limits.max_write_zeroes_segments = 2;
  }
  Result<Request> parse(uint32_t type, uint64_t sector, std::vector<VirtioBuffer> buffers) {
    EXPECT_TRUE(memory.write_obj(GuestAddress(kHeaderAt), RequestHeader{type, 0, sector}).ok());
    return parse_request(memory, DescriptorChain(7, std::move(buffers)), limits);
  }
  static VirtioBuffer header() { return {GuestAddress(kHeaderAt), 16, false}; }
  static VirtioBuffer status() { return {GuestAddress(kStatusAt), 1, true}; }
  static VirtioBuffer data(uint32_t length, bool writable) { return {GuestAddress(kDataAt), length, writable}; }
  static uint8_t rejected(const Result<Request>& r) {
    return r.ok() && std::holds_alternative<RejectedRequest>(*r) ? std::get<RejectedRequest>(*r).status : 0xff;
  }

  GuestMemory memory;
  DiskLimits limits;
};

TEST_F(VirtioBlkRequestTest, ReadsAndWritesNameTheirSectorsAndLength) {
  auto read = parse(kRequestIn, 8, {header(), data(1024, true), status()});
  ASSERT_TRUE(read.ok());
  ASSERT_TRUE(std::holds_alternative<ReadRequest>(*read));
  EXPECT_EQ(std::get<ReadRequest>(*read).sector, 8u);
  EXPECT_EQ(std::get<ReadRequest>(*read).length, 1024u);
  auto write = parse(kRequestOut, 62, {header(), data(1024, false), status()});
  ASSERT_TRUE(write.ok());
  ASSERT_TRUE(std::holds_alternative<WriteRequest>(*write));
  EXPECT_EQ(std::get<WriteRequest>(*write).length, 1024u);
  // A zero-length read at the very end is a request, served without the disk.
  auto empty = parse(kRequestIn, 64, {header(), status()});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(std::get<ReadRequest>(*empty).length, 0u);
}

TEST_F(VirtioBlkRequestTest, AnswerableButUnservableRequestsAreRejectedWithTheirStatus) {
  EXPECT_EQ(rejected(parse(kRequestIn, 63, {header(), data(1024, true), status()})), kStatusIoError);  // past the end
  EXPECT_EQ(rejected(parse(kRequestIn, ~0ull, {header(), data(512, true), status()})), kStatusIoError);
  EXPECT_EQ(rejected(parse(kRequestIn, 0, {header(), data(511, true), status()})), kStatusIoError);
  EXPECT_EQ(rejected(parse(kRequestOut, 0, {header(), data(512, true), status()})), kStatusIoError);  // wrong way
  EXPECT_EQ(rejected(parse(kRequestIn, 0, {{GuestAddress(kHeaderAt), 8, false}, status()})), kStatusIoError);
  EXPECT_EQ(rejected(parse(3, 0, {header(), status()})), kStatusUnsupported);
  limits.read_only = true;
  EXPECT_EQ(rejected(parse(kRequestOut, 0, {header(), data(512, false), status()})), kStatusIoError);
}

TEST_F(VirtioBlkRequestTest, FlushAndGetId) {
  auto flush = parse(kRequestFlush, 0, {header(), status()});
  ASSERT_TRUE(flush.ok());
  EXPECT_TRUE(std::holds_alternative<FlushRequest>(*flush));
  auto id = parse(kRequestGetId, 0, {header(), data(64, true), status()});
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(std::get<GetIdRequest>(*id).room, kIdBytes);
}

TEST_F(VirtioBlkRequestTest, SegmentsAreCheckedBeforeAnyReachesTheDisk) {
  DiscardWriteZeroesSegment segments[2] = {{0, 8, 0}, {8, 8, kSegmentFlagUnmap}};
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt), segments).ok());
  auto zeroes = parse(kRequestWriteZeroes, 0, {header(), data(32, false), status()});
  ASSERT_TRUE(zeroes.ok());
  ASSERT_TRUE(std::holds_alternative<SegmentsRequest>(*zeroes));
  EXPECT_TRUE(std::get<SegmentsRequest>(*zeroes).write_zeroes);
  EXPECT_EQ(std::get<SegmentsRequest>(*zeroes).segments.size(), 2u);
  // UNMAP on a discard is UNSUPP; too many segments or sectors, IOERR.
  EXPECT_EQ(rejected(parse(kRequestDiscard, 0, {header(), data(32, false), status()})), kStatusUnsupported);
  EXPECT_EQ(rejected(parse(kRequestDiscard, 0, {header(), data(48, false), status()})), kStatusIoError);
  segments[1] = {60, 8, 0};  // past the end
  ASSERT_TRUE(memory.write_obj(GuestAddress(kDataAt), segments).ok());
  EXPECT_EQ(rejected(parse(kRequestDiscard, 0, {header(), data(32, false), status()})), kStatusIoError);
  limits.discard = false;
  EXPECT_EQ(rejected(parse(kRequestDiscard, 0, {header(), data(16, false), status()})), kStatusUnsupported);
}

TEST_F(VirtioBlkRequestTest, AChainWithoutAStatusByteCannotBeAnswered) {
  auto r = parse(kRequestOut, 0, {header(), data(512, false)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kGuest);
  EXPECT_NE(r.error().message().find("status"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
