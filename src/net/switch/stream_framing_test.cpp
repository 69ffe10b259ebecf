#include "net/switch/stream_framing.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "net/net_backend.h"
#include "net/switch/stream_output_queue.h"

namespace hostvisor::net {
namespace {

std::vector<uint8_t> framed(size_t length, uint8_t fill) {
  std::vector<uint8_t> out;
  const auto prefix = encode_stream_length(static_cast<uint32_t>(length));
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), length, fill);
  return out;
}

void feed(StreamFrameReader& reader, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    auto space = reader.free_space();
    ASSERT_FALSE(space.empty());
    const size_t n = std::min(space.size(), bytes.size());
    std::memcpy(space.data(), bytes.data(), n);
    reader.commit(n);
    bytes = bytes.subspan(n);
  }
}

TEST(StreamFraming, LengthIsBigEndian) {
  EXPECT_EQ(encode_stream_length(0x01020304), (std::array<uint8_t, 4>{1, 2, 3, 4}));
}

TEST(StreamFraming, DecodesFramesSplitAtEveryByte) {
  std::vector<uint8_t> stream = framed(60, 0xaa);
  const auto second = framed(1518, 0xbb);
  stream.insert(stream.end(), second.begin(), second.end());
  StreamFrameReader reader(kEthernetHeaderSize, kMaxPlainFrameSize);
  std::vector<size_t> lengths;
  for (uint8_t byte : stream) {
    feed(reader, std::span<const uint8_t>(&byte, 1));
    auto frame = reader.next();
    ASSERT_TRUE(frame.ok()) << frame.error().message();
    if (*frame) {
      lengths.push_back((*frame)->size());
      EXPECT_EQ((**frame)[0], lengths.size() == 1 ? 0xaa : 0xbb);
    }
  }
  EXPECT_EQ(lengths, (std::vector<size_t>{60, 1518}));
  EXPECT_TRUE(reader.finish().ok());
}

TEST(StreamFraming, ManyFramesInOneReadComeOutInOrder) {
  std::vector<uint8_t> stream;
  for (int i = 0; i < 100; ++i) {
    const auto f = framed(64 + i, static_cast<uint8_t>(i));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  StreamFrameReader reader(kEthernetHeaderSize, kMaxPlainFrameSize);
  int seen = 0;
  size_t at = 0;
  while (at < stream.size() || reader.pending()) {
    auto space = reader.free_space();
    const size_t n = std::min(space.size(), stream.size() - at);
    std::memcpy(space.data(), stream.data() + at, n);
    reader.commit(n);
    at += n;
    for (;;) {
      auto frame = reader.next();
      ASSERT_TRUE(frame.ok());
      if (!*frame) break;
      EXPECT_EQ((*frame)->size(), 64u + seen);
      EXPECT_EQ((**frame)[0], seen);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 100);
}

TEST(StreamFraming, BadLengthsAreErrorsThatStick) {
  for (uint32_t bad : {0u, 13u, 1519u, 0xffffffffu}) {
    StreamFrameReader reader(kEthernetHeaderSize, kMaxPlainFrameSize);
    const auto prefix = encode_stream_length(bad);
    feed(reader, prefix);
    auto frame = reader.next();
    ASSERT_FALSE(frame.ok()) << bad;
    EXPECT_NE(frame.error().message().find("frame of"), std::string::npos) << frame.error().message();
    EXPECT_FALSE(reader.next().ok());
  }
}

TEST(StreamFraming, AStreamEndingInsideAFrameIsAnError) {
  StreamFrameReader reader(kEthernetHeaderSize, kMaxPlainFrameSize);
  auto bytes = framed(100, 1);
  bytes.resize(50);
  feed(reader, bytes);
  auto frame = reader.next();
  ASSERT_TRUE(frame.ok());
  EXPECT_FALSE(frame->has_value());
  EXPECT_FALSE(reader.finish().ok());
}

TEST(StreamFraming, LargerLimitsTakeHeaderedSuperFrames) {
  StreamFrameReader reader(kEthernetHeaderSize, kMaxPlainFrameSize);
  reader.set_limits(kVnetHeaderSize + kEthernetHeaderSize, kMaxPacketSize);
  feed(reader, framed(kMaxPacketSize, 7));
  auto frame = reader.next();
  ASSERT_TRUE(frame.ok());
  ASSERT_TRUE(frame->has_value());
  EXPECT_EQ((*frame)->size(), kMaxPacketSize);
}

TEST(StreamOutputQueue, RefusesWhatPassesTheBoundAndWritesInOrder) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  StreamOutputQueue queue(1000);
  const std::vector<uint8_t> a(100, 1), b(400, 2), c(600, 3);
  EXPECT_TRUE(queue.push({a}));
  EXPECT_TRUE(queue.push({b, a}));
  EXPECT_FALSE(queue.push({c})) << "104 + 504 + 604 bytes passes the 1000-byte bound";
  EXPECT_EQ(queue.bytes(), 608u);
  auto written = queue.flush(fds[0]);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, 608u);
  EXPECT_TRUE(queue.empty());

  StreamFrameReader reader(1, 1000);
  auto space = reader.free_space();
  const ssize_t n = ::read(fds[1], space.data(), space.size());
  ASSERT_EQ(n, 608);
  reader.commit(static_cast<size_t>(n));
  auto first = reader.next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->size(), 100u);
  auto second = reader.next();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->size(), 500u);
  EXPECT_EQ((**second)[0], 2);
  EXPECT_EQ((**second)[499], 1);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(StreamOutputQueue, APeerThatIsGoneIsAnError) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  ::close(fds[1]);
  StreamOutputQueue queue(1000);
  EXPECT_TRUE(queue.push({std::vector<uint8_t>(10, 0)}));
  EXPECT_FALSE(queue.flush(fds[0]).ok());
  ::close(fds[0]);
}

}  // namespace
}  // namespace hostvisor::net
