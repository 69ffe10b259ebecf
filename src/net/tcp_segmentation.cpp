#include "net/tcp_segmentation.h"

#include <algorithm>
#include <cstring>

#include "net/internet_checksum.h"

namespace hostvisor::net {

namespace {
constexpr size_t kEthernet = 14;
constexpr size_t kIpv6Header = 40;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}
void put16(std::span<uint8_t> b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(std::span<uint8_t> b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}

struct Layout {
  bool ipv6 = false;
  size_t ip_header = 0;   // bytes
  size_t tcp_header = 0;  // bytes
  size_t headers() const { return kEthernet + ip_header + tcp_header; }
};

// Checks the headers against the GSO type; the TCP payload is what follows them.
bool read_layout(std::span<const uint8_t> frame, uint8_t gso, Layout& out) {
  if (frame.size() < kEthernet + 20) return false;
  const uint16_t ether_type = get16(frame, 12);
  if (gso == kGsoTcpV4) {
    if (ether_type != 0x0800 || (frame[kEthernet] >> 4) != 4 || frame[kEthernet + 9] != 6) return false;
    out.ip_header = (frame[kEthernet] & 0xf) * 4u;
    if (out.ip_header < 20 || (get16(frame, kEthernet + 6) & 0x3fff) != 0) return false;  // no fragments
  } else if (gso == kGsoTcpV6) {
    if (ether_type != 0x86dd || frame.size() < kEthernet + kIpv6Header || (frame[kEthernet] >> 4) != 6 ||
        frame[kEthernet + 6] != 6)  // TCP straight after the fixed header
      return false;
    out.ipv6 = true;
    out.ip_header = kIpv6Header;
  } else {
    return false;
  }
  const size_t tcp = kEthernet + out.ip_header;
  if (frame.size() < tcp + 20) return false;
  out.tcp_header = (frame[tcp + 12] >> 4) * 4u;
  return out.tcp_header >= 20 && frame.size() >= out.headers();
}

// The TCP checksum over the pseudo-header and the segment, from scratch.
uint16_t tcp_checksum(std::span<const uint8_t> segment, const Layout& layout) {
  const size_t tcp = kEthernet + layout.ip_header;
  const size_t tcp_length = segment.size() - tcp;
  uint32_t sum = 0;
  if (layout.ipv6) {
    sum = checksum_add(segment.subspan(kEthernet + 8, 32));  // source and destination
  } else {
    sum = checksum_add(segment.subspan(kEthernet + 12, 8));
  }
  sum += 6;  // protocol
  sum += static_cast<uint32_t>(tcp_length >> 16) + static_cast<uint32_t>(tcp_length & 0xffff);
  return checksum_finish(checksum_add(segment.subspan(tcp), sum));
}
}  // namespace

bool segment_tcp(std::span<const uint8_t> frame, const VirtioNetHeader& header, std::vector<uint8_t>& scratch,
                 const std::function<void(std::span<const uint8_t>)>& emit) {
  Layout layout;
  const auto gso = static_cast<uint8_t>(header.gso_type & ~kGsoEcn);
  if (header.gso_size < kMinimumGsoSize || !read_layout(frame, gso, layout)) return false;
  const size_t headers = layout.headers();
  const size_t tcp = kEthernet + layout.ip_header;
  const auto payload = frame.subspan(headers);
  const uint32_t first_seq = get32(frame, tcp + 4);
  const uint8_t flags = frame[tcp + 13];
  const uint16_t first_id = layout.ipv6 ? 0 : get16(frame, kEthernet + 4);

  const size_t mss = header.gso_size;
  const size_t count = std::max<size_t>(1, (payload.size() + mss - 1) / mss);
  for (size_t i = 0; i < count; ++i) {
    const size_t offset = i * mss;
    const size_t length = std::min(mss, payload.size() - offset);
    scratch.assign(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(headers));
    scratch.insert(scratch.end(), payload.begin() + static_cast<ptrdiff_t>(offset),
                   payload.begin() + static_cast<ptrdiff_t>(offset + length));
    const std::span<uint8_t> s(scratch);
    const bool last = i + 1 == count;
    put32(s, tcp + 4, first_seq + static_cast<uint32_t>(offset));
    // FIN and PSH end the data, so only the last segment has them; CWR
    // answers an ECN echo once, so only the first.
    uint8_t segment_flags = flags;
    if (!last) segment_flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i != 0) segment_flags &= static_cast<uint8_t>(~kTcpCwr);
    s[tcp + 13] = segment_flags;
    if (layout.ipv6) {
      put16(s, kEthernet + 4, static_cast<uint16_t>(s.size() - kEthernet - kIpv6Header));
    } else {
      put16(s, kEthernet + 2, static_cast<uint16_t>(s.size() - kEthernet));
      put16(s, kEthernet + 4, static_cast<uint16_t>(first_id + i));
      put16(s, kEthernet + 10, 0);
      put16(s, kEthernet + 10, checksum_finish(checksum_add(s.subspan(kEthernet, layout.ip_header))));
    }
    put16(s, tcp + 16, 0);
    put16(s, tcp + 16, tcp_checksum(s, layout));
    emit(s);
  }
  return true;
}

}  // namespace hostvisor::net
