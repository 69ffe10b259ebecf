#include "net/switch/ethernet_switch.h"

#include <algorithm>
#include <cstring>

#include "net/internet_checksum.h"
#include "net/switch/stream_framing.h"
#include "net/tcp_segmentation.h"

namespace hostvisor::net {

namespace {
bool is_multicast(std::span<const uint8_t> mac) { return (mac[0] & 1) != 0; }

MacAddress mac_at(std::span<const uint8_t> frame, size_t at) {
  MacAddress mac;
  std::memcpy(mac.data(), frame.data() + at, mac.size());
  return mac;
}

// Can `mode` take a frame with `header` as it is?
bool takes_as_is(const SwitchPortMode& mode, const VirtioNetHeader& header) {
  const uint8_t gso = header.gso_type & ~kGsoEcn;
  if (header.gso_type != kGsoNone) {
    if (!mode.headers || !mode.offloads.csum) return false;
    if (gso == kGsoTcpV4 && !mode.offloads.tso4) return false;
    if (gso == kGsoTcpV6 && !mode.offloads.tso6) return false;
    if ((header.gso_type & kGsoEcn) && !mode.offloads.ecn) return false;
    return true;
  }
  if (header.flags & kHeaderNeedsCsum) return mode.headers && mode.offloads.csum;
  return true;
}
}  // namespace

bool plausible_header(const VirtioNetHeader& header, size_t frame_size) {
  if (header.flags & kHeaderNeedsCsum) {
    if (size_t{header.csum_start} + header.csum_offset + 2 > frame_size) return false;
  }
  if (header.gso_type == kGsoNone) return true;
  const uint8_t gso = header.gso_type & ~kGsoEcn;
  if (gso != kGsoTcpV4 && gso != kGsoTcpV6) return false;
  return header.gso_size >= kMinimumGsoSize && (header.flags & kHeaderNeedsCsum);
}

PortId EthernetSwitch::add_port(SwitchPortSink* sink, SwitchPortMode mode) {
  const PortId id = next_port_++;
  ports_.emplace(id, Port{sink, mode});
  return id;
}

void EthernetSwitch::set_port_mode(PortId port, SwitchPortMode mode) {
  if (auto it = ports_.find(port); it != ports_.end()) it->second.mode = mode;
}

void EthernetSwitch::remove_port(PortId port) {
  ports_.erase(port);
  macs_.forget_port(port);
}

void EthernetSwitch::forward(PortId from, const VirtioNetHeader& header, std::span<const uint8_t> frame,
                             SwitchClock::time_point now) {
  ++counters_.frames;
  if (frame.size() < kEthernetHeaderSize || !plausible_header(header, frame.size()) || !ports_.contains(from)) {
    ++counters_.dropped;
    return;
  }
  const auto destination = frame.subspan(0, 6);
  const auto source = frame.subspan(6, 6);
  // A multicast source is not a station; it is never learned.
  if (!is_multicast(source)) macs_.learn(mac_at(frame, 6), from, now);

  targets_.clear();
  if (!is_multicast(destination)) {
    if (const auto port = macs_.lookup(mac_at(frame, 0), now)) {
      if (*port == from) {  // no hairpin: the destination is on the sender's own port
        ++counters_.dropped;
        return;
      }
      targets_.push_back(*port);
    }
  }
  if (targets_.empty()) {
    ++counters_.flooded;
    for (const auto& [id, port] : ports_) {
      if (id != from) targets_.push_back(id);
    }
  }
  Converted converted = Converted::kNotYet;
  for (PortId id : targets_) deliver(ports_.at(id), header, frame, converted);
}

void EthernetSwitch::deliver(const Port& port, const VirtioNetHeader& header, std::span<const uint8_t> frame,
                             Converted& converted) {
  // A plain peer (QEMU) takes no frame over the MTU: not a headered port's
  // non-TSO jumbo frame, nor the segments of a TSO frame whose MSS is larger.
  auto deliver_one = [&](const VirtioNetHeader& h, std::span<const uint8_t> f) {
    if (!port.mode.headers && f.size() > kMaxPlainFrameSize) {
      ++counters_.dropped;
      return;
    }
    port.sink->deliver(h, f);
    ++counters_.delivered;
  };
  if (takes_as_is(port.mode, header)) {
    VirtioNetHeader out = header;
    out.num_buffers = 0;
    // DATA_VALID promises a checked checksum: only to a port that takes checksum offloads.
    if (!port.mode.offloads.csum) out.flags = 0;
    deliver_one(out, frame);
    return;
  }
  if (converted == Converted::kNotYet) {
    if (header.gso_type != kGsoNone) {
      segment_count_ = 0;
      const bool cut = segment_tcp(frame, header, scratch_, [&](std::span<const uint8_t> segment) {
        if (segments_.size() <= segment_count_) segments_.emplace_back();
        segments_[segment_count_++].assign(segment.begin(), segment.end());
      });
      converted = cut ? Converted::kSegments : Converted::kFailed;
      if (cut) ++counters_.segmented;
    } else {
      completed_.assign(frame.begin(), frame.end());
      converted = complete_partial_checksum(completed_, header.csum_start, header.csum_offset) ? Converted::kCompleted
                                                                                               : Converted::kFailed;
    }
  }
  const VirtioNetHeader plain{};
  switch (converted) {
    case Converted::kSegments:
      for (size_t i = 0; i < segment_count_; ++i) deliver_one(plain, segments_[i]);
      break;
    case Converted::kCompleted: deliver_one(plain, completed_); break;
    default: ++counters_.dropped; break;
  }
}

}  // namespace hostvisor::net
