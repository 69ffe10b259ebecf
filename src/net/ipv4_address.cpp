#include "net/ipv4_address.h"

#include <charconv>

namespace hostvisor::net {

namespace {
// A decimal number with no sign, no leading '+' and no trailing text.
bool parse_decimal(std::string_view text, uint32_t max, uint32_t& out) {
  if (text.empty() || text.size() > 10) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out <= max;
}
}  // namespace

Result<Ipv4Address> parse_ipv4_address(const std::string& text) {
  uint32_t value = 0;
  size_t at = 0;
  for (int part = 0; part < 4; ++part) {
    const size_t dot = part < 3 ? text.find('.', at) : text.size();
    uint32_t byte = 0;
    if (dot == std::string::npos || !parse_decimal(std::string_view(text).substr(at, dot - at), 255, byte))
      return Error(ErrorCode::kInvalidArgument, "'" + text + "' is not an IPv4 address such as 10.0.2.15");
    value = value << 8 | byte;
    at = dot + 1;
  }
  return Ipv4Address{value};
}

std::string format_ipv4_address(Ipv4Address address) {
  const uint32_t v = address.value;
  return std::to_string(v >> 24) + "." + std::to_string(v >> 16 & 0xff) + "." + std::to_string(v >> 8 & 0xff) + "." +
         std::to_string(v & 0xff);
}

Result<Ipv4Network> parse_ipv4_network(const std::string& text) {
  const size_t slash = text.find('/');
  uint32_t prefix = 0;
  if (slash == std::string::npos || !parse_decimal(std::string_view(text).substr(slash + 1), 32, prefix))
    return Error(ErrorCode::kInvalidArgument, "'" + text + "' is not a network such as 10.0.2.0/24");
  const Ipv4Address base = HV_TRY(parse_ipv4_address(text.substr(0, slash)));
  const Ipv4Network network{base, static_cast<uint8_t>(prefix)};
  if ((base.value & ~network.mask()) != 0)
    return Error(ErrorCode::kInvalidArgument,
                 "'" + text + "' has host bits set; write the network's first address, " +
                     format_ipv4_network({{base.value & network.mask()}, network.prefix_length}));
  return network;
}

std::string format_ipv4_network(const Ipv4Network& network) {
  return format_ipv4_address(network.base) + "/" + std::to_string(network.prefix_length);
}

}  // namespace hostvisor::net
