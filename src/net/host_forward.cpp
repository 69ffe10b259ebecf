#include "net/host_forward.h"

#include <charconv>

namespace hostvisor::net {

namespace {
Result<uint16_t> parse_port(const std::string& text, const char* which) {
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port == 0 || port > 65535)
    return Error(ErrorCode::kInvalidArgument, std::string(which) + " port '" + text + "' is not a number 1-65535");
  return static_cast<uint16_t>(port);
}

struct AddressAndPort {
  std::optional<Ipv4Address> address;
  uint16_t port = 0;
};

// "[ADDR]:PORT": the port follows the last ':'.
Result<AddressAndPort> parse_side(const std::string& text, const char* which) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(which) + " side '" + text + "' needs [ADDRESS]:PORT, e.g. :8080 or 127.0.0.1:8080");
  AddressAndPort out;
  if (colon > 0) {
    auto address = parse_ipv4_address(text.substr(0, colon));
    if (!address)
      return Error(ErrorCode::kInvalidArgument, std::string(which) + " address: " + address.error().message());
    out.address = *address;
  }
  out.port = HV_TRY(parse_port(text.substr(colon + 1), which));
  return out;
}
}  // namespace

Result<HostForward> parse_host_forward(const std::string& text) {
  const size_t colon = text.find(':');
  const size_t dash = text.find('-');
  if (colon == std::string::npos || dash == std::string::npos || dash < colon ||
      text.find('-', dash + 1) != std::string::npos)
    return Error(ErrorCode::kInvalidArgument, "expected PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT");
  HostForward forward;
  const std::string protocol = text.substr(0, colon);
  if (protocol == "tcp" || protocol.empty()) {
    forward.protocol = ForwardProtocol::kTcp;
  } else if (protocol == "udp") {
    forward.protocol = ForwardProtocol::kUdp;
  } else {
    return Error(ErrorCode::kInvalidArgument, "protocol '" + protocol + "' is neither tcp nor udp");
  }
  const AddressAndPort host = HV_TRY(parse_side(text.substr(colon + 1, dash - colon - 1), "host"));
  const AddressAndPort guest = HV_TRY(parse_side(text.substr(dash + 1), "guest"));
  if (host.address) forward.host_address = *host.address;
  forward.host_port = host.port;
  forward.guest_address = guest.address;
  forward.guest_port = guest.port;
  return forward;
}

std::string format_host_forward(const HostForward& forward) {
  return std::string(forward.protocol == ForwardProtocol::kTcp ? "tcp" : "udp") + ":" +
         format_ipv4_address(forward.host_address) + ":" + std::to_string(forward.host_port) + "-" +
         (forward.guest_address ? format_ipv4_address(*forward.guest_address) : "") + ":" +
         std::to_string(forward.guest_port);
}

}  // namespace hostvisor::net
