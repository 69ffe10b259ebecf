#include "net/mac_address.h"

#include <sys/random.h>

#include <cstdio>

namespace hostvisor::net {

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<MacAddress> parse_mac_address(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument,
                 "MAC address '" + text + "' " + why + "; write six hex bytes such as 52:54:00:12:34:56");
  };
  if (text.size() != 17) return bad("has the wrong length");
  MacAddress mac{};
  for (size_t i = 0; i < 6; ++i) {
    const int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0) return bad("has a non-hex digit");
    if (i < 5 && text[3 * i + 2] != ':' && text[3 * i + 2] != '-') return bad("needs ':' between bytes");
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  if (mac[0] & 1) return bad("is a multicast address");
  return mac;
}

std::string format_mac_address(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

MacAddress random_local_mac_address() {
  MacAddress mac{};
  // getrandom on 6 bytes does not fail short or block once the pool is up;
  // a failure leaves zeros, still made a valid local address below.
  [[maybe_unused]] ssize_t n = ::getrandom(mac.data(), mac.size(), 0);
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfc) | 0x02);
  return mac;
}

MacAddress derived_mac_address(std::string_view seed) {
  uint64_t hash = 0xcbf29ce484222325;  // FNV-1a 64
  for (const char c : seed) hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001b3;
  MacAddress mac;
  for (size_t i = 0; i < mac.size(); ++i) mac[i] = static_cast<uint8_t>(hash >> (8 * i));
  mac[0] = static_cast<uint8_t>((mac[0] & ~1u) | 2u);  // unicast, locally administered
  return mac;
}

}  // namespace hostvisor::net
