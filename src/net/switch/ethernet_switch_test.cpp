#include "net/switch/ethernet_switch.h"

#include <gtest/gtest.h>

#include "net/internet_checksum.h"
#include "net/switch/switch_control.h"
#include "net/testing/frames.h"

namespace hostvisor::net {
namespace {

using namespace testing;
using namespace std::chrono_literals;

struct RecordingPort : SwitchPortSink {
  struct Delivery {
    VirtioNetHeader header;
    Bytes frame;
  };
  std::vector<Delivery> got;
  void deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) override {
    got.push_back({header, Bytes(frame.begin(), frame.end())});
  }
};

constexpr MacAddress kA{0x02, 0, 0, 0, 0, 0xa}, kB{0x02, 0, 0, 0, 0, 0xb}, kC{0x02, 0, 0, 0, 0, 0xc};
const SwitchClock::time_point kStart{};

Bytes frame_between(const MacAddress& from, const MacAddress& to) {
  return udp_frame({from, to, {0x0a000001}, {0x0a000002}}, 1000, 2000, to_bytes("hello"));
}

struct ThreePorts : ::testing::Test {
  EthernetSwitch sw;
  RecordingPort a, b, c;
  PortId pa = sw.add_port(&a), pb = sw.add_port(&b), pc = sw.add_port(&c);
  void send(PortId from, const Bytes& frame, SwitchClock::time_point now = kStart) { sw.forward(from, {}, frame, now); }
  void clear() { a.got.clear(), b.got.clear(), c.got.clear(); }
};

TEST_F(ThreePorts, FloodsUnknownThenLearnsAndNeverHairpins) {
  send(pa, frame_between(kA, kB));  // B unknown: flooded to B and C, not back to A
  EXPECT_EQ(a.got.size(), 0u);
  EXPECT_EQ(b.got.size(), 1u);
  EXPECT_EQ(c.got.size(), 1u);
  clear();
  send(pb, frame_between(kB, kA));  // A was learned: to A only
  EXPECT_EQ(a.got.size(), 1u);
  EXPECT_EQ(c.got.size(), 0u);
  clear();
  send(pa, frame_between(kA, kB));  // B was learned too
  EXPECT_EQ(b.got.size(), 1u);
  EXPECT_EQ(c.got.size(), 0u);
  clear();
  // A frame to a MAC learned on the sender's own port goes nowhere.
  send(pa, frame_between(kB, kA));
  send(pa, frame_between(kC, kB));
  EXPECT_EQ(a.got.size() + b.got.size() + c.got.size(), 0u);
  EXPECT_EQ(sw.counters().dropped, 2u);
}

TEST_F(ThreePorts, BroadcastAndMulticastReachEveryOtherPort) {
  send(pb, frame_between(kB, kA));
  clear();
  send(pa, frame_between(kA, kBroadcastMac));
  send(pa, frame_between(kA, {0x01, 0x00, 0x5e, 0, 0, 1}));
  EXPECT_EQ(a.got.size(), 0u);
  EXPECT_EQ(b.got.size(), 2u);
  EXPECT_EQ(c.got.size(), 2u);
}

TEST_F(ThreePorts, EntriesAgeOutAndLeaveWithTheirPort) {
  send(pb, frame_between(kB, kA));
  clear();
  send(pa, frame_between(kA, kB), kStart + 10min);  // B aged out: flooded
  EXPECT_EQ(c.got.size(), 1u);
  clear();
  send(pb, frame_between(kB, kA), kStart + 10min);
  sw.remove_port(pa);
  send(pb, frame_between(kB, kA), kStart + 10min);  // A's port left: flooded to C
  EXPECT_EQ(c.got.size(), 1u);
}

TEST(MacTable, IsBoundedAndEvictsTheLeastRecentlySeen) {
  MacTable table(2, 1min);
  table.learn(kA, 1, kStart);
  table.learn(kB, 2, kStart + 1s);
  table.learn(kA, 1, kStart + 2s);  // A refreshed: B is now the oldest
  table.learn(kC, 3, kStart + 3s);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.lookup(kA, kStart + 3s), PortId{1});
  EXPECT_FALSE(table.lookup(kB, kStart + 3s));
  EXPECT_EQ(table.lookup(kC, kStart + 3s), PortId{3});
  table.expire(kStart + 62s + 500ms);
  EXPECT_EQ(table.size(), 1u);  // A (seen at 2 s) is gone, C (3 s) stays
}

TEST_F(ThreePorts, MalformedFramesAndHeadersAreDropped) {
  send(pa, Bytes(10, 0xff));
  VirtioNetHeader bad{};
  bad.flags = kHeaderNeedsCsum;
  bad.csum_start = 60;
  bad.csum_offset = 6;
  sw.forward(pa, bad, frame_between(kA, kB), kStart);  // checksum past the end
  VirtioNetHeader tiny_mss{};
  tiny_mss.flags = kHeaderNeedsCsum;
  tiny_mss.gso_type = kGsoTcpV4;
  tiny_mss.gso_size = 1;
  tiny_mss.csum_start = 34;
  tiny_mss.csum_offset = 16;
  sw.forward(pa, tiny_mss, frame_between(kA, kB), kStart);
  EXPECT_EQ(b.got.size() + c.got.size(), 0u);
  EXPECT_EQ(sw.counters().dropped, 3u);
}

// A 64 KiB TSO frame: as it is to a port that takes TSO, cut into whole
// checksummed segments for a plain one (once, however many such ports).
TEST(EthernetSwitch, PassesTsoToOffloadPortsAndSegmentsForPlainOnes) {
  EthernetSwitch sw;
  RecordingPort sender, offload, plain1, plain2;
  const SwitchPortMode tso_mode{true, {true, true, true, false}};
  const PortId ps = sw.add_port(&sender, tso_mode);
  sw.add_port(&offload, tso_mode);
  sw.add_port(&plain1);
  sw.add_port(&plain2, {true, {}});  // headers but no offloads: what a guest without them gets

  TcpSegment s;
  s.source_port = 5000;
  s.destination_port = 6000;
  s.seq = 1;
  s.flags = kTcpAck | kTcpPsh;
  s.payload.resize(65000);
  for (size_t i = 0; i < s.payload.size(); ++i) s.payload[i] = static_cast<uint8_t>(i);
  const Bytes frame = tcp_frame({kA, kBroadcastMac, {0x0a000001}, {0x0a000002}}, s);
  const VirtioNetHeader header = tso4_header();
  sw.forward(ps, header, frame, kStart);

  ASSERT_EQ(offload.got.size(), 1u);
  EXPECT_EQ(offload.got[0].frame.size(), frame.size());
  EXPECT_EQ(offload.got[0].header.gso_type, kGsoTcpV4);
  EXPECT_EQ(offload.got[0].header.gso_size, 1448);
  for (RecordingPort* plain : {&plain1, &plain2}) {
    ASSERT_EQ(plain->got.size(), (65000u + 1447) / 1448);
    size_t payload = 0;
    for (const auto& d : plain->got) {
      EXPECT_EQ(d.header.gso_type, kGsoNone);
      EXPECT_EQ(d.header.flags, 0);
      auto parsed = parse_frame(d.frame);
      ASSERT_TRUE(parsed);
      EXPECT_TRUE(parsed->checksums_ok);
      EXPECT_EQ(parsed->tcp.seq, 1 + payload);
      payload += parsed->payload.size();
    }
    EXPECT_EQ(payload, 65000u);
  }
  EXPECT_EQ(sw.counters().segmented, 1u);
}

// A plain peer never gets a frame over the MTU: not a jumbo frame from a
// headered port, nor segments cut at an MSS larger than the MTU.
TEST(EthernetSwitch, FramesOverTheMtuNeverReachAPlainPort) {
  EthernetSwitch sw;
  RecordingPort sender, plain, headered;
  const PortId ps = sw.add_port(&sender, {true, {true, true, true, false}});
  sw.add_port(&plain);
  sw.add_port(&headered, {true, {}});
  TcpSegment s;
  s.flags = kTcpAck;
  s.payload.resize(20000);
  const Bytes frame = tcp_frame({kA, kBroadcastMac, {0x0a000001}, {0x0a000002}}, s);
  sw.forward(ps, {}, frame, kStart);  // a 20 KB frame with no offload asked
  VirtioNetHeader big_mss{};
  big_mss.flags = kHeaderNeedsCsum;
  big_mss.gso_type = kGsoTcpV4;
  big_mss.gso_size = 9000;
  big_mss.csum_start = 34;
  big_mss.csum_offset = 16;
  sw.forward(ps, big_mss, frame, kStart);
  EXPECT_TRUE(plain.got.empty());
  EXPECT_EQ(headered.got.size(), 1u + 3u) << "a headered port takes the jumbo frame and the three 9000-byte segments";
}

TEST(EthernetSwitch, CompletesPartialChecksumsForPortsWithoutOffloads) {
  EthernetSwitch sw;
  RecordingPort sender, plain;
  const PortId ps = sw.add_port(&sender, {true, {true, true, true, false}});
  sw.add_port(&plain);
  Bytes frame = frame_between(kA, kB);
  // The UDP checksum field (14 + 20 + 6) holds the pseudo-header's sum
  // only, as a guest leaves it for the NIC.
  const uint32_t pseudo = checksum_add(std::span<const uint8_t>(frame).subspan(26, 8), 17u + (frame.size() - 34));
  const auto folded = static_cast<uint16_t>(~checksum_finish(pseudo));
  frame[40] = static_cast<uint8_t>(folded >> 8);
  frame[41] = static_cast<uint8_t>(folded);
  ASSERT_FALSE(parse_frame(frame)->checksums_ok);
  VirtioNetHeader header{};
  header.flags = kHeaderNeedsCsum;
  header.csum_start = 34;
  header.csum_offset = 6;
  sw.forward(ps, header, frame, kStart);
  ASSERT_EQ(plain.got.size(), 1u);
  EXPECT_TRUE(parse_frame(plain.got[0].frame)->checksums_ok);
}

TEST(SwitchControl, RoundTripsAndIgnoresOrdinaryFrames) {
  SwitchControl welcome{SwitchControlType::kWelcome, {true, false, true, false}, kB, true, "10.9.0.0/24"};
  const auto frame = encode_switch_control(welcome);
  EXPECT_GE(frame.size(), 60u);
  auto decoded = decode_switch_control(frame);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->type, SwitchControlType::kWelcome);
  EXPECT_TRUE(decoded->offloads.csum);
  EXPECT_FALSE(decoded->offloads.tso4);
  EXPECT_TRUE(decoded->offloads.tso6);
  EXPECT_EQ(decoded->dhcp, "10.9.0.0/24");
  EXPECT_EQ(decoded->mac, kB);
  EXPECT_TRUE(decoded->mac_in_use);
  EXPECT_FALSE(decode_switch_control(frame_between(kA, kB)));
  auto truncated = frame;
  truncated.resize(20);
  EXPECT_FALSE(decode_switch_control(truncated));
}

TEST(SwitchControl, ForwardsAndTheirResultsRoundTripAndMalformedOnesAreRefused) {
  SwitchControl request;
  request.type = SwitchControlType::kForward;
  request.forward = {ForwardProtocol::kUdp, {0x7f000001}, 5353, std::nullopt, 53};
  auto decoded = decode_switch_control(encode_switch_control(request));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->type, SwitchControlType::kForward);
  EXPECT_EQ(decoded->forward, request.forward);

  SwitchControl result;
  result.type = SwitchControlType::kForwardResult;
  result.forward = {ForwardProtocol::kTcp, {0}, 8080, Ipv4Address{0x0a5a0042}, 80};
  result.text = std::string(300, 'x');  // cut to the limit
  const auto frame = encode_switch_control(result);
  decoded = decode_switch_control(frame);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->forward, result.forward);
  EXPECT_EQ(decoded->text, std::string(kMaxSwitchControlText, 'x'));

  // Cut anywhere in the forward or the text: refused, never read past the end.
  for (size_t length = 14 + 16 + 11; length < frame.size(); ++length) {
    const std::vector<uint8_t> cut(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(length));
    EXPECT_FALSE(decode_switch_control(cut)) << length;
  }
  // A protocol other than TCP or UDP, or a has-guest flag other than 0 or 1.
  for (size_t at : {size_t{14 + 16 + 11}, size_t{14 + 16 + 11 + 7}}) {
    auto bad = encode_switch_control(request);
    bad[at] = 2;
    EXPECT_FALSE(decode_switch_control(bad)) << at;
  }
  // The Welcome's gateway flag.
  SwitchControl welcome;
  welcome.type = SwitchControlType::kWelcome;
  welcome.gateway = true;
  decoded = decode_switch_control(encode_switch_control(welcome));
  ASSERT_TRUE(decoded);
  EXPECT_TRUE(decoded->gateway);
  EXPECT_FALSE(decoded->mac_in_use);
}

}  // namespace
}  // namespace hostvisor::net
