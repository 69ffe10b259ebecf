#include "net/switch/switch_control.h"

#include <algorithm>
#include <cstring>

#include "net/switch/stream_framing.h"

namespace hostvisor::net {

namespace {
constexpr uint8_t kDestination[6] = {0x03, 0x68, 0x76, 0x73, 0x77, 0x00};  // local multicast
constexpr char kMagic[16] = {'h', 'o', 's', 't', 'v', 'i', 's', 'o', 'r', '-', 's', 'w', 'i', 't', 'c', 'h'};
constexpr size_t kFixed =
    kEthernetHeaderSize + sizeof kMagic + 11;  // + version, type, offloads, status, MAC, dhcp length
constexpr size_t kMaxDhcpText = 64;
constexpr size_t kForwardSize = 14;             // protocol, host address and port, has-guest, guest address and port
constexpr uint8_t kMacInUse = 1, kGateway = 2;  // status bits

bool carries_forward(SwitchControlType type) {
  return type == SwitchControlType::kForward || type == SwitchControlType::kForwardResult;
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}
uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}

uint8_t offload_bits(const ReceiveOffloads& o) {
  return static_cast<uint8_t>((o.csum ? 1 : 0) | (o.tso4 ? 2 : 0) | (o.tso6 ? 4 : 0) | (o.ecn ? 8 : 0));
}
}  // namespace

std::vector<uint8_t> encode_switch_control(const SwitchControl& control) {
  std::vector<uint8_t> frame(kFixed, 0);
  std::memcpy(frame.data(), kDestination, 6);
  frame[6] = 0x02;  // a locally administered source: the control frame comes from no station
  frame[12] = kSwitchControlEtherType >> 8;
  frame[13] = kSwitchControlEtherType & 0xff;
  std::memcpy(frame.data() + kEthernetHeaderSize, kMagic, sizeof kMagic);
  size_t at = kEthernetHeaderSize + sizeof kMagic;
  frame[at++] = kSwitchControlVersion;
  frame[at++] = static_cast<uint8_t>(control.type);
  frame[at++] = offload_bits(control.offloads);
  frame[at++] = static_cast<uint8_t>((control.mac_in_use ? kMacInUse : 0) | (control.gateway ? kGateway : 0));
  std::memcpy(frame.data() + at, control.mac.data(), 6);
  at += 6;
  const size_t dhcp_length = std::min(control.dhcp.size(), kMaxDhcpText);
  frame[at++] = static_cast<uint8_t>(dhcp_length);
  frame.insert(frame.end(), control.dhcp.begin(), control.dhcp.begin() + static_cast<ptrdiff_t>(dhcp_length));
  if (carries_forward(control.type)) {
    const HostForward& f = control.forward;
    frame.push_back(f.protocol == ForwardProtocol::kUdp ? 1 : 0);
    put32(frame, f.host_address.value);
    put16(frame, f.host_port);
    frame.push_back(f.guest_address ? 1 : 0);
    put32(frame, f.guest_address.value_or(Ipv4Address{}).value);
    put16(frame, f.guest_port);
  }
  if (control.type == SwitchControlType::kForwardResult) {
    const size_t text_length = std::min(control.text.size(), kMaxSwitchControlText);
    frame.push_back(static_cast<uint8_t>(text_length));
    frame.insert(frame.end(), control.text.begin(), control.text.begin() + static_cast<ptrdiff_t>(text_length));
  }
  // Pad to the Ethernet minimum, as any frame on a wire.
  if (frame.size() < 60) frame.resize(60, 0);
  return frame;
}

std::optional<SwitchControl> decode_switch_control(std::span<const uint8_t> frame) {
  if (frame.size() < kFixed || frame[12] != (kSwitchControlEtherType >> 8) ||
      frame[13] != (kSwitchControlEtherType & 0xff) ||
      std::memcmp(frame.data() + kEthernetHeaderSize, kMagic, sizeof kMagic) != 0)
    return std::nullopt;
  size_t at = kEthernetHeaderSize + sizeof kMagic;
  if (frame[at++] != kSwitchControlVersion) return std::nullopt;
  const uint8_t type = frame[at++];
  if (type < 1 || type > 5) return std::nullopt;
  const uint8_t bits = frame[at++];
  const uint8_t status = frame[at++];
  MacAddress mac;
  std::memcpy(mac.data(), frame.data() + at, 6);
  at += 6;
  const size_t dhcp_length = frame[at++];
  if (dhcp_length > kMaxDhcpText || frame.size() < at + dhcp_length) return std::nullopt;
  SwitchControl control;
  control.type = static_cast<SwitchControlType>(type);
  control.offloads = {(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0};
  control.mac = mac;
  control.mac_in_use = (status & kMacInUse) != 0;
  control.gateway = (status & kGateway) != 0;
  control.dhcp.assign(reinterpret_cast<const char*>(frame.data() + at), dhcp_length);
  at += dhcp_length;
  if (carries_forward(control.type)) {
    if (frame.size() < at + kForwardSize || frame[at] > 1 || frame[at + 7] > 1) return std::nullopt;
    HostForward& f = control.forward;
    f.protocol = frame[at] == 1 ? ForwardProtocol::kUdp : ForwardProtocol::kTcp;
    f.host_address = {get32(frame, at + 1)};
    f.host_port = get16(frame, at + 5);
    if (frame[at + 7] == 1) f.guest_address = Ipv4Address{get32(frame, at + 8)};
    f.guest_port = get16(frame, at + 12);
    at += kForwardSize;
  }
  if (control.type == SwitchControlType::kForwardResult) {
    if (frame.size() < at + 1) return std::nullopt;
    const size_t text_length = frame[at++];
    if (text_length > kMaxSwitchControlText || frame.size() < at + text_length) return std::nullopt;
    control.text.assign(reinterpret_cast<const char*>(frame.data() + at), text_length);
  }
  return control;
}

}  // namespace hostvisor::net
