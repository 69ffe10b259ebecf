// A hostile frame from a VM on a rootless host-only network. Input: the
// gateway's address (4 bytes), then one Ethernet frame.
//  - The gateway filter never reads past the frame, and a frame it takes is
//    IPv4 whose destination field is the gateway or ARP whose target is.
//  - A frame that decodes as a switch control frame encodes back to one
//    that decodes the same (what the switch answers a Forward with is built
//    from what it decoded).
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "net/host_only/gateway_filter.h"
#include "net/switch/switch_control.h"

using namespace hostvisor::net;

namespace {
uint32_t read32(const std::vector<uint8_t>& b, size_t at) {
  return static_cast<uint32_t>(b[at]) << 24 | static_cast<uint32_t>(b[at + 1]) << 16 |
         static_cast<uint32_t>(b[at + 2]) << 8 | b[at + 3];
}

bool same(const SwitchControl& a, const SwitchControl& b) {
  return a.type == b.type && a.offloads.csum == b.offloads.csum && a.offloads.tso4 == b.offloads.tso4 &&
         a.offloads.tso6 == b.offloads.tso6 && a.offloads.ecn == b.offloads.ecn && a.mac == b.mac &&
         a.mac_in_use == b.mac_in_use && a.gateway == b.gateway && a.dhcp == b.dhcp && a.text == b.text &&
         ((a.type != SwitchControlType::kForward && a.type != SwitchControlType::kForwardResult) ||
          a.forward == b.forward);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Ipv4Address gateway{hostvisor::fuzz::take<uint32_t>(data, size)};
  // An exact-size copy, so ASan sees any read past the frame.
  const std::vector<uint8_t> frame(data, data + size);

  if (gateway_takes_frame(frame, gateway)) {
    if (frame.size() < 14) std::abort();
    const uint16_t ether_type = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
    if (ether_type == 0x0800) {
      if (frame.size() < 14 + 20 || read32(frame, 14 + 16) != gateway.value) std::abort();
    } else if (ether_type == 0x0806) {
      if (frame.size() < 14 + 28 || read32(frame, 14 + 24) != gateway.value) std::abort();
    } else {
      std::abort();
    }
  }

  if (const auto control = decode_switch_control(frame)) {
    const auto again = decode_switch_control(encode_switch_control(*control));
    if (!again || !same(*control, *again)) std::abort();
  }
  return 0;
}
