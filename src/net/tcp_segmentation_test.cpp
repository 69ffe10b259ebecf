#include "net/tcp_segmentation.h"

#include <gtest/gtest.h>

#include "net/testing/frames.h"

namespace hostvisor::net {
namespace {

using namespace testing;

const Endpoints kPath{{0x52, 0x54, 0, 0x12, 0x34, 0x56}, {0x52, 0x55, 0x0a, 0, 2, 2}, {0x0a00020f}, {0x0a000202}};

VirtioNetHeader tso4(uint16_t mss) {
  VirtioNetHeader header{};
  header.flags = kHeaderNeedsCsum;
  header.gso_type = kGsoTcpV4;
  header.gso_size = mss;
  return header;
}

std::vector<ParsedFrame> cut(const Bytes& frame, const VirtioNetHeader& header, bool* accepted = nullptr) {
  std::vector<ParsedFrame> out;
  std::vector<uint8_t> scratch;
  const bool ok = segment_tcp(frame, header, scratch, [&](std::span<const uint8_t> segment) {
    auto parsed = parse_frame(segment);
    EXPECT_TRUE(parsed.has_value());
    if (parsed) out.push_back(*parsed);
  });
  if (accepted) *accepted = ok;
  return out;
}

TEST(TcpSegmentation, CutsAtTheMssWithWholeChecksumsAndTheRightFlags) {
  Bytes payload(3500);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  TcpSegment s;
  s.source_port = 40000;
  s.destination_port = 80;
  s.seq = 0xfffffc00;  // wraps inside the packet
  s.ack = 77;
  s.flags = kTcpAck | kTcpPsh | kTcpFin | 0x80;  // CWR
  s.payload = payload;
  Bytes frame = tcp_frame(kPath, s);
  frame[14 + 4] = 0x12;  // IP id 0x1234
  frame[14 + 5] = 0x34;
  frame[50] = frame[51] = 0;  // a partial TCP checksum: recomputed anyway

  const auto segments = cut(frame, tso4(1000));
  ASSERT_EQ(segments.size(), 4u);
  Bytes joined;
  for (size_t i = 0; i < segments.size(); ++i) {
    const ParsedFrame& p = segments[i];
    EXPECT_TRUE(p.checksums_ok) << i;
    EXPECT_EQ(p.payload.size(), i < 3 ? 1000u : 500u);
    EXPECT_EQ(p.tcp.seq, 0xfffffc00 + static_cast<uint32_t>(1000 * i));
    EXPECT_EQ(p.tcp.ack, 77u);
    EXPECT_EQ((p.tcp.flags & (kTcpPsh | kTcpFin)) != 0, i == 3) << i;
    EXPECT_EQ((p.tcp.flags & 0x80) != 0, i == 0) << i;
    EXPECT_TRUE(p.tcp.flags & kTcpAck);
    joined.insert(joined.end(), p.payload.begin(), p.payload.end());
  }
  EXPECT_EQ(joined, payload);
}

TEST(TcpSegmentation, APacketWithinTheMssIsOneSegment) {
  TcpSegment s;
  s.flags = kTcpAck;
  s.payload = Bytes(100, 1);
  const auto segments = cut(tcp_frame(kPath, s), tso4(1460));
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_TRUE(segments[0].checksums_ok);
  EXPECT_EQ(segments[0].payload, s.payload);
}

TEST(TcpSegmentation, RefusesWhatIsNotATcpSuperPacketOfItsType) {
  TcpSegment s;
  s.flags = kTcpAck;
  s.payload = Bytes(3000, 2);
  const Bytes frame = tcp_frame(kPath, s);
  bool accepted = true;

  EXPECT_TRUE(cut(frame, tso4(kMinimumGsoSize - 1), &accepted).empty());
  EXPECT_FALSE(accepted);

  VirtioNetHeader v6 = tso4(1000);
  v6.gso_type = kGsoTcpV6;  // an IPv4 frame
  EXPECT_TRUE(cut(frame, v6, &accepted).empty());
  EXPECT_FALSE(accepted);

  Bytes fragment = frame;
  fragment[14 + 6] = 0x20;  // more fragments
  EXPECT_TRUE(cut(fragment, tso4(1000), &accepted).empty());
  EXPECT_FALSE(accepted);

  const Bytes udp = udp_frame(kPath, 1, 2, Bytes(3000));
  EXPECT_TRUE(cut(udp, tso4(1000), &accepted).empty());
  EXPECT_FALSE(accepted);

  const Bytes truncated(frame.begin(), frame.begin() + 40);
  EXPECT_TRUE(cut(truncated, tso4(1000), &accepted).empty());
  EXPECT_FALSE(accepted);
}

}  // namespace
}  // namespace hostvisor::net
