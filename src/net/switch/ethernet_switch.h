// The forwarding core of the VM-to-VM switch, with no I/O of its own: a
// learning Ethernet switch over abstract ports. The process around it
// (switch_server.*) owns sockets and queues; another owner (a host-only
// gateway, a test) can plug its own ports.
//
// Forwarding: the source MAC is learned on the port a frame came from; a
// unicast destination that is known goes to its port only (and nowhere if
// that is the sender's own port: no hairpin); broadcast, multicast and
// unknown destinations are flooded to every port but the sender.
//
// Offloads: frames enter with a virtio-net header (all zero from a port
// without headers). A port takes a frame as it is only when it negotiated
// headers and accepts what this one asks (a partial checksum, a TSO
// super-frame of its type); for any other port the switch does the NIC's
// work in software once per frame, whatever the number of such ports: TSO
// frames are cut into MSS-sized segments with full checksums, and partial
// checksums are completed.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "net/net_backend.h"
#include "net/switch/mac_table.h"

namespace hostvisor::net {

// One port's receiving end, as the switch sees it.
class SwitchPortSink {
 public:
  virtual ~SwitchPortSink() = default;
  // Takes one frame for the port; `header` is what goes before it on a port
  // with headers (ignore it otherwise). Must not call back into the switch;
  // a port that cannot keep up drops the frame or marks itself for removal.
  virtual void deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) = 0;
};

// What a port's frames carry.
struct SwitchPortMode {
  bool headers = false;        // a virtio-net header before every frame, both ways
  ReceiveOffloads offloads{};  // what the headers toward the port may ask of it
};

struct SwitchCounters {
  uint64_t frames = 0;     // frames taken from ports
  uint64_t delivered = 0;  // frames (or segments) handed to ports
  uint64_t flooded = 0;    // frames with no known single destination
  uint64_t dropped = 0;    // malformed or unforwardable frames
  uint64_t segmented = 0;  // TSO frames cut in software
};

struct EthernetSwitchLimits {
  size_t mac_entries = 4096;
  SwitchClock::duration mac_age = std::chrono::minutes(5);
};

class EthernetSwitch {
 public:
  explicit EthernetSwitch(const EthernetSwitchLimits& limits = {}) : macs_(limits.mac_entries, limits.mac_age) {}

  // `sink` must outlive the port (until remove_port()).
  PortId add_port(SwitchPortSink* sink, SwitchPortMode mode = {});
  void set_port_mode(PortId port, SwitchPortMode mode);
  void remove_port(PortId port);

  // Forwards one frame that came from `from`. `header` is the frame's
  // virtio-net header (zero from a port without headers).
  void forward(PortId from, const VirtioNetHeader& header, std::span<const uint8_t> frame, SwitchClock::time_point now);

  // Ages the MAC table (call now and then).
  void expire(SwitchClock::time_point now) { macs_.expire(now); }

  const SwitchCounters& counters() const { return counters_; }

 private:
  struct Port {
    SwitchPortSink* sink;
    SwitchPortMode mode;
  };
  // The frame in the form ports without its offloads take: made for the
  // first such port and reused for the others.
  enum class Converted { kNotYet, kSegments, kCompleted, kFailed };

  void deliver(const Port& port, const VirtioNetHeader& header, std::span<const uint8_t> frame, Converted& converted);

  MacTable macs_;
  std::unordered_map<PortId, Port> ports_;
  PortId next_port_ = 1;
  SwitchCounters counters_;
  std::vector<uint8_t> scratch_;
  std::vector<std::vector<uint8_t>> segments_;
  size_t segment_count_ = 0;
  std::vector<uint8_t> completed_;
  std::vector<PortId> targets_;
};

// True when a header from a port describes a frame the switch can pass on
// or convert: its checksum offsets inside the frame, a known GSO type with
// a sane segment size.
bool plausible_header(const VirtioNetHeader& header, size_t frame_size);

}  // namespace hostvisor::net
