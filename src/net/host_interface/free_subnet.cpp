#include "net/host_interface/free_subnet.h"

#include <algorithm>

#include "net/host_interface/host_routes.h"

namespace hostvisor::net {

std::optional<Ipv4Network> choose_free_subnet(const std::vector<Ipv4Network>& routes) {
  auto is_free = [&](const Ipv4Network& candidate) {
    return std::none_of(routes.begin(), routes.end(), [&](const Ipv4Network& route) {
      return route.prefix_length > 0 && networks_overlap(route, candidate);
    });
  };
  struct Range {
    uint32_t first, last;  // the /24 bases, host byte order
  };
  static constexpr Range kRanges[] = {
      {0xc0a83800, 0xc0a8ff00},  // 192.168.56.0 - 192.168.255.0
      {0xac100000, 0xac1fff00},  // 172.16.0.0 - 172.31.255.0
      {0x0a000000, 0x0afffe00},  // 10.0.0.0 - 10.255.254.0
  };
  for (const Range& range : kRanges) {
    for (uint64_t base = range.first; base <= range.last; base += 0x100) {
      const Ipv4Network candidate{{static_cast<uint32_t>(base)}, 24};
      if (is_free(candidate)) return candidate;
    }
  }
  return std::nullopt;
}

}  // namespace hostvisor::net
