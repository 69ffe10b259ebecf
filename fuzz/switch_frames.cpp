// The switch on a hostile stream. Never crashes or grows without bound, and
// what reaches each port fits it: a plain port never gets a frame over the
// MTU or a header asking for offloads, a headered port without offloads
// never gets a partial checksum or a TSO frame.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fuzz/fuzz_input.h"
#include "net/dhcp/dhcp_server.h"
#include "net/switch/ethernet_switch.h"
#include "net/switch/stream_framing.h"
#include "net/switch/switch_control.h"

using namespace hostvisor::net;

namespace {
struct CheckingPort : SwitchPortSink {
  SwitchPortMode mode;
  explicit CheckingPort(SwitchPortMode m) : mode(m) {}
  void deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) override {
    if (frame.size() < kEthernetHeaderSize) std::abort();
    if (!mode.headers && frame.size() > kMaxPlainFrameSize) std::abort();
    if (!mode.offloads.csum && (header.flags & kHeaderNeedsCsum)) std::abort();
    if (!mode.offloads.tso4 && (header.gso_type & ~kGsoEcn) == kGsoTcpV4) std::abort();
    if (!mode.offloads.tso6 && (header.gso_type & ~kGsoEcn) == kGsoTcpV6) std::abort();
  }
};

struct DhcpSink : SwitchPortSink {
  hostvisor::net::dhcp::DhcpServer server;
  explicit DhcpSink(hostvisor::net::dhcp::DhcpServer s) : server(std::move(s)) {}
  void deliver(const VirtioNetHeader&, std::span<const uint8_t> frame) override {
    if (auto reply = server.handle_frame(frame, SwitchClock::time_point{})) {
      if (reply->size() > kMaxPlainFrameSize) std::abort();
    }
    if (server.lease_count() > 16) std::abort();
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hostvisor::fuzz::take;
  const auto config = take<uint8_t>(data, size);
  const bool headers = config & 1;
  const SwitchPortMode sender_mode{headers, {(config & 2) != 0, (config & 4) != 0, (config & 8) != 0, false}};

  EthernetSwitch sw({.mac_entries = 8});
  CheckingPort sender(sender_mode), offload({true, {true, true, true, true}}), plain({}), bare({true, {}});
  auto server = hostvisor::net::dhcp::DhcpServer::create({.network = {{0x0a090000}, 28}, .max_leases = 16});
  if (!server.ok()) std::abort();
  DhcpSink dhcp(std::move(server).value());
  const PortId from = sw.add_port(&sender, sender_mode);
  sw.add_port(&offload, offload.mode);
  sw.add_port(&plain);
  sw.add_port(&bare, bare.mode);
  sw.add_port(&dhcp);

  StreamFrameReader reader(headers ? kVnetHeaderSize + kEthernetHeaderSize : kEthernetHeaderSize,
                           headers ? kMaxPacketSize : kMaxPlainFrameSize, 1);
  while (size > 0) {
    // Each chunk: a 2-byte length, then up to that many stream bytes.
    const size_t chunk = std::min<size_t>(take<uint16_t>(data, size) % 8192 + 1, size);
    auto space = reader.free_space();
    const size_t n = std::min(chunk, space.size());
    std::memcpy(space.data(), data, n);
    data += n;
    size -= n;
    reader.commit(n);
    for (;;) {
      auto frame = reader.next();
      if (!frame.ok()) return 0;  // the switch closes the port
      if (!*frame) break;
      std::span<const uint8_t> bytes = **frame;
      VirtioNetHeader header{};
      if (headers) {
        std::memcpy(&header, bytes.data(), sizeof header);
        bytes = bytes.subspan(sizeof header);
      }
      if (decode_switch_control(bytes)) continue;
      sw.forward(from, header, bytes, SwitchClock::time_point{});
    }
  }
  (void)reader.finish();
  return 0;
}
