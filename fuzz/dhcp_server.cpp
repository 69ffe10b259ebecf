// The DHCP server on frames from a hostile segment: each input is a series
// of frames (a 2-byte length, then the frame) at advancing times. It never
// crashes, its lease table stays within its bound, and every reply is a
// well-formed IPv4/UDP frame from port 67 to 68, or an ARP reply. Addresses
// reserved for a MAC ahead of its DHCP (address_for()) share the same bound.
#include "net/dhcp/dhcp_server.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_input.h"

using namespace hostvisor::net;
using namespace hostvisor::net::dhcp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hostvisor::fuzz::take;
  const uint8_t prefix = 24 + take<uint8_t>(data, size) % 7;  // /24 .. /30
  const Ipv4Network network{{0x0a090000u & ~((1u << (32 - prefix)) - 1)}, prefix};
  auto created = DhcpServer::create({.network = network, .max_leases = 4});
  if (!created.ok()) std::abort();
  DhcpServer server = std::move(created).value();
  Clock::time_point now{};
  while (size > 0) {
    const size_t length = std::min<size_t>(take<uint16_t>(data, size) % 2048, size);
    const std::vector<uint8_t> frame(data, data + length);
    data += length;
    size -= length;
    now += std::chrono::seconds(take<uint8_t>(data, size)) * 64;
    // A frame of 6 bytes is a host-only VM's MAC asking its address for a
    // forward (address_for(), what the switch does for a Forward).
    if (frame.size() == 6) {
      MacAddress mac;
      std::copy(frame.begin(), frame.end(), mac.begin());
      const auto address = server.address_for(mac, now);
      if (server.lease_count() > 4) std::abort();
      if (address && (!network.contains(*address) || *address == network.host(1))) std::abort();
      continue;
    }
    auto reply = server.handle_frame(frame, now);
    if (server.lease_count() > 4) std::abort();
    if (!reply) continue;
    if (reply->size() < 42) std::abort();
    const uint16_t type = static_cast<uint16_t>((*reply)[12] << 8 | (*reply)[13]);
    if (type == 0x0806) continue;
    if (type != 0x0800 || (*reply)[23] != 17) std::abort();
    if ((*reply)[34] != 0 || (*reply)[35] != 67 || (*reply)[36] != 0 || (*reply)[37] != 68) std::abort();
  }
  return 0;
}
