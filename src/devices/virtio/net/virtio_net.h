// virtio network device (virtio 1.2, 5.1): one receive queue (0) and one
// transmit queue (1), a MAC address and link status in the configuration
// space, mergeable receive buffers; frames go to and come from a NetBackend
// with their virtio_net_hdr_v1. When the backend supports offloads (a Linux
// tap does), checksum offload and TCP segmentation offload are offered both
// ways and headers pass through, checked against what was negotiated;
// otherwise every header crossing the device is plain (flags 0, GSO_NONE).
//
// A rate limit (VirtioNetOptions::rate_bytes_per_second) holds each
// direction to that many Ethernet-frame bytes per second with a token bucket
// per direction (net::TokenBucket, as Firecracker's): when a bucket runs dry
// the device stops taking transmit chains, or holds the received packet and
// stops reading the backend, and serves the queue again when the bucket has
// refilled, through the core's retry_later() timer, never by polling.
//
// Event loop wiring: watch backend_fd() for readability while
// wants_backend_events() is true and call process_backend() when it is
// readable. When the guest has no receive buffers the device stops reading
// (the packets wait in the backend, e.g. the tap's queue) and says so through
// the interest callback; when the driver posts buffers (a queue 0
// notification) it reads again by itself and says it wants events again.
//
// Thread-safe: process_queue() (vCPU or event-loop thread) and
// process_backend() (event-loop thread) may race; one mutex serialises them.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio/net/virtio_net_spec.h"
#include "devices/virtio/virtio_device_core.h"
#include "net/mac_address.h"
#include "net/net_backend.h"
#include "net/token_bucket.h"

namespace hostvisor {

struct VirtioNetOptions {
  net::MacAddress mac = net::random_local_mac_address();
  uint16_t queue_size = 256;
  // Ethernet-frame bytes per second in each direction; none: unlimited.
  std::optional<uint64_t> rate_bytes_per_second;
  // Nanoseconds on a monotonic clock, for the rate limit (tests pass a fake
  // one); empty: CLOCK_MONOTONIC.
  std::function<uint64_t()> clock_ns;
};

class VirtioNet : public VirtioDeviceCore {
 public:
  // The most pieces a transmitted packet is handed to the backend in (the
  // header and one per guest buffer): what one writev takes (IOV_MAX).
  static constexpr size_t kMaxPacketSegments = 1024;

  // Per-NIC counters, from the guest's side (tx: what it sent, rx: what it
  // was handed). Bytes are Ethernet-frame bytes, without the virtio header.
  // A drop is counted once, in *_dropped; *_dropped_by_guest says how many
  // of those the guest caused (a malformed packet or header, receive buffers
  // that can never hold the packet), the rest are the backend's (a send it
  // refused, a packet it handed over cut or with a header not negotiated).
  struct Stats {
    uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0, rx_dropped_by_guest = 0;
    uint64_t tx_packets = 0, tx_bytes = 0, tx_dropped = 0, tx_dropped_by_guest = 0;
    // Times the rate limit stopped a direction until its bucket refilled.
    uint64_t rx_throttled = 0, tx_throttled = 0;
  };

  VirtioNet(std::unique_ptr<net::NetBackend> backend, VirtioNetOptions options);

  // The fd the event loop watches for packets from the backend.
  int backend_fd() const { return backend_->receive_fd(); }
  // Moves waiting packets from the backend into the guest's receive buffers.
  void process_backend();
  // False while reading the backend is pointless (no guest buffers, device
  // not running, backend failed): stop watching backend_fd() meanwhile.
  bool wants_backend_events() const;
  // Called with the new value each time wants_backend_events() changes, with
  // the device lock held (do not call back into the device from it).
  void set_backend_interest_callback(std::function<void(bool)> callback);

  Stats stats() const;
  // The counters as one line, for the log at exit.
  static std::string format_stats(const Stats& stats);
  const net::MacAddress& mac() const { return options_.mac; }
  net::NetBackend& backend() { return *backend_; }

  // The MAC the guest saw and the backend's state (the NAT's connections).
  // A packet half-delivered when the snapshot is taken is dropped, as a
  // lossy link may; chains are never held between passes, so there is
  // nothing else to give back.
  static constexpr size_t kMaxBackendState = 64u << 20;
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;
  // A clone gets a MAC of its own (before the guest runs).
  void set_mac(const net::MacAddress& mac);

  std::string_view name() const override { return "net"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_net::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;

 private:
  Result<void> on_activate() override;
  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  void receive();
  void transmit();
  // Makes sure `count` receive chains are held; false if the driver has not
  // posted that many, the turn's budget is spent, or the device failed.
  bool hold_receive_chains(size_t count);
  // One packet read by the backend straight into the guest's receive
  // buffers (a backend that receives_in_place(), no rate limit): kHandled
  // (delivered or dropped), kEmpty (nothing waiting), kFailed (the backend
  // failed), kCannot (too few buffers for the largest packet, or a buffer
  // that is not one stretch of RAM: the copying path takes the packet).
  enum class InPlace { kHandled, kEmpty, kFailed, kCannot };
  InPlace receive_in_place();
  // Gives the chains popped but not used back to the available ring.
  void release_receive_chains();
  void deliver_packet(size_t chains, net::VirtioNetHeader header);
  // Points tx_iov_ at `header` and the frame in the chain's guest buffers;
  // false when a buffer is not one stretch of RAM (or the chain has more
  // segments than one writev takes).
  bool gather_transmit_frame(const DescriptorChain& chain, net::VirtioNetHeader& header);
  // Header checks against the negotiated offloads; false: drop the packet.
  bool accept_transmit_header(net::VirtioNetHeader& header) const;
  bool accept_receive_header(net::VirtioNetHeader& header) const;
  void update_interest_locked();
  bool wants_events_locked() const;
  uint64_t now_ns() const;
  // Takes `bytes` from `bucket` (none: unlimited); if it holds too few, asks
  // for another turn of `queue` when it will hold enough and returns false.
  bool take_tokens(std::optional<net::TokenBucket>& bucket, uint16_t queue, uint64_t bytes);

  std::unique_ptr<net::NetBackend> backend_;
  VirtioNetOptions options_;

  // --- guarded by the core's mutex_
  bool mergeable_ = false;
  uint64_t negotiated_ = 0;
  net::ReceiveOffloads rx_offloads_;                       // what the backend was told it may send us
  bool backend_failed_ = false;                            // the backend returned an error on receive
  bool rx_stalled_ = false;                                // a packet or the backend waits for guest buffers
  bool rx_throttled_ = false;                              // a packet waits for the rate limit's tokens
  std::optional<net::TokenBucket> rx_bucket_, tx_bucket_;  // the rate limit, if any
  std::deque<DescriptorChain> rx_chains_;                  // receive chains popped in this pass, not yet used
  std::vector<uint8_t> rx_packet_;                         // the packet being delivered
  size_t rx_length_ = 0;                                   // its length; 0: none
  net::VirtioNetHeader rx_header_{};                       // its header, checked
  std::vector<iovec> rx_iov_;                              // where an in-place packet is read to
  std::vector<uint8_t> tx_packet_;                         // a frame that could not be gathered in place
  std::vector<iovec> tx_iov_;                              // the packet being sent, as the backend gets it
  Stats stats_;
  std::function<void(bool)> interest_callback_;
  bool last_interest_ = false;
};

}  // namespace hostvisor
