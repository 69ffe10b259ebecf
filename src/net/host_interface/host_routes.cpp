#include "net/host_interface/host_routes.h"

#include <arpa/inet.h>

#include <bit>
#include <charconv>
#include <fstream>
#include <sstream>

namespace hostvisor::net {

namespace {
// "0002000A" -> 10.0.2.0: the kernel prints the big-endian word as a
// native one, so its bytes in memory are in network order.
bool parse_route_address(const std::string& text, uint32_t& value) {
  if (text.size() != 8) return false;
  uint32_t word = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), word, 16);
  if (error != std::errc() || end != text.data() + text.size()) return false;
  value = ntohl(word);
  return true;
}
}  // namespace

std::vector<Ipv4Network> parse_proc_net_route(const std::string& text) {
  std::vector<Ipv4Network> routes;
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string interface, destination, gateway, flags, refcount, use, metric, mask;
    if (!(fields >> interface >> destination >> gateway >> flags >> refcount >> use >> metric >> mask)) continue;
    uint32_t base = 0, netmask = 0;
    if (!parse_route_address(destination, base) || !parse_route_address(mask, netmask)) continue;
    // A prefix mask is ones then zeros.
    const int prefix = std::popcount(netmask);
    if (prefix != std::countl_one(netmask)) continue;
    routes.push_back(Ipv4Network{{base & netmask}, static_cast<uint8_t>(prefix)});
  }
  return routes;
}

Result<std::vector<Ipv4Network>> read_host_routes() {
  std::ifstream file("/proc/net/route");
  if (!file) return Error(ErrorCode::kIo, "cannot read /proc/net/route to find a free subnet");
  std::ostringstream text;
  text << file.rdbuf();
  return parse_proc_net_route(text.str());
}

bool networks_overlap(const Ipv4Network& a, const Ipv4Network& b) {
  const Ipv4Network& wider = a.prefix_length <= b.prefix_length ? a : b;
  const Ipv4Network& narrower = &wider == &a ? b : a;
  return wider.contains(narrower.base);
}

}  // namespace hostvisor::net
