// NetBackend: where a virtual NIC's frames go and come from (a tap device,
// a socket to another VM, user-mode NAT). Every frame crossing this interface
// starts with a 12-byte virtio_net_hdr_v1 (virtio 1.2, 5.1.6), the format
// Linux tap devices speak with IFF_VNET_HDR, so virtio-net passes it through
// without translation.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/net_counters.h"

namespace hostvisor::net {

// struct virtio_net_hdr_v1 (little-endian).
struct VirtioNetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(VirtioNetHeader) == 12);
inline constexpr size_t kVnetHeaderSize = sizeof(VirtioNetHeader);
// Header flags and GSO types (virtio 1.2, 5.1.6).
inline constexpr uint8_t kHeaderNeedsCsum = 1;
inline constexpr uint8_t kHeaderDataValid = 2;
inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpV4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpV6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

// The largest Ethernet frame a backend carries: the largest IP packet
// (65535 bytes, what a TSO super-packet can reach) behind an Ethernet header
// with a VLAN tag.
inline constexpr size_t kMaxFrameSize = 65535 + 18;
// Header + the largest frame: the size of a receive buffer that never truncates.
inline constexpr size_t kMaxPacketSize = kVnetHeaderSize + kMaxFrameSize;

// What packets toward the guest may carry: partial checksums (NEEDS_CSUM)
// and TCP segmentation (GSO) super-packets.
struct ReceiveOffloads {
  bool csum = false;
  bool tso4 = false;
  bool tso6 = false;
  bool ecn = false;
};

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  // For messages: "tap hv0", "socket".
  virtual std::string_view name() const = 0;

  // Sends one packet: header + Ethernet frame, scattered over `packet`. Never
  // blocks; when the host side is congested the packet is dropped with an
  // error (kBusy), as a NIC drops on a full wire.
  virtual Result<void> send(std::span<const iovec> packet) = 0;

  // Receives one packet (header + frame) into `buffer` without blocking.
  // Returns its length, or nothing when no packet is waiting. `buffer` should
  // hold kMaxPacketSize bytes; a longer packet is cut (and reported as such
  // by a length equal to buffer.size()).
  virtual Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) = 0;

  // A backend that reads packets from an fd can read one straight into
  // scattered buffers (header first, then the frame): virtio-net hands it
  // the guest's receive buffers, so the packet is copied once. Same results
  // as receive(); a length equal to the buffers' total may be a cut packet.
  virtual bool receives_in_place() const { return false; }
  virtual Result<std::optional<size_t>> receive_in_place(std::span<const iovec> buffers) {
    (void)buffers;
    return Error(ErrorCode::kUnsupported, std::string(name()) + " does not receive into scattered buffers");
  }

  // Readable when receive() has a packet: the event loop watches it.
  virtual int receive_fd() const = 0;

  // The link MTU (Ethernet payload bytes), for the guest's configuration.
  virtual uint32_t mtu() const = 0;

  // True when the backend takes packets with partial checksums and GSO
  // headers from the guest (the host finishes them) and can be told to hand
  // such packets to the guest. Without it every header must be plain.
  virtual bool supports_offloads() const { return false; }
  // What receive() may return from now on; only with supports_offloads().
  virtual Result<void> set_receive_offloads(const ReceiveOffloads& offloads) {
    return Error(ErrorCode::kUnsupported, std::string(name()) + " does not do checksum or segmentation offloads");
  }

  // A backend with work of its own (user-mode NAT: host sockets, timers)
  // gives an fd that is readable when that work is due; the event loop
  // watches it and calls service() on the loop thread. -1: nothing to do.
  // service() is never called on two threads at once, nor after the loop
  // stopped watching (the owner removes the fd before the backend goes).
  virtual int service_fd() const { return -1; }
  virtual void service() {}

  // Snapshots: the backend's own state as bytes (the user-mode NAT's
  // connections and ARP table), empty for a backend that has none (a tap
  // is opened again by name). Called on the event loop's thread, between
  // service() passes; load_state() takes what save_state() gave, on a
  // backend opened from the same option, before the guest runs.
  virtual Result<std::vector<uint8_t>> save_state() { return std::vector<uint8_t>{}; }
  virtual Result<void> load_state(std::span<const uint8_t> state) {
    if (state.empty()) return ok();
    return Error(ErrorCode::kUnsupported, std::string(name()) + ": this network backend keeps no saved state");
  }

  // Traffic counters, for a backend that keeps them (the log line at exit,
  // the API).
  virtual std::optional<NetCounters> counters() const { return std::nullopt; }
};

}  // namespace hostvisor::net
