// User-mode NAT: a NetBackend on libslirp, in-process and unprivileged. The
// guest gets DHCP and DNS (forwarded to the host's resolver) from a virtual
// gateway; its TCP, UDP and ICMP echo leave through the host's own sockets;
// hostfwd= forwards bring host connections in.
//
// Threads. slirp is not thread-safe, so one thread owns it: the device event
// loop, which watches service_fd() and calls service() when it is readable.
// send() (a vCPU thread or the loop, wherever the device transmits) only
// copies the frame into a bounded queue; receive() (likewise) only takes
// frames from another bounded queue that service() fills. No thread is
// started and none waits per connection.
//
// service_fd() is an epoll set of the backend's own (epoll nests): slirp's
// sockets, each with exactly the events slirp asked for on the last pass, a
// timerfd on CLOCK_MONOTONIC for slirp's timers (slirp's clock is the same
// CLOCK_MONOTONIC), and the transmit queue's eventfd. One wake-up of the loop
// is one pass over slirp, however many sockets and frames are ready, so the
// per-pass cost (slirp walks its sockets to say what it wants polled) is
// paid per batch, not per packet.
//
// Offloads: slirp takes plain frames only, so the backend finishes what a
// NIC would before slirp sees a frame: a partial checksum (NEEDS_CSUM) is
// completed and a TCP segmentation super-packet (GSO TCPv4/TCPv6) is cut
// into MSS-sized frames (net/tcp_segmentation.h). So it claims offloads
// (supports_offloads()), and a guest on the software CPU neither checksums
// nor segments its TCP stream itself. Toward the guest slirp's frames are
// whole and checksummed; with the guest's checksum offload on, they are
// marked DATA_VALID so the guest does not verify them either.
//
// IPv4 fragments from the guest are dropped (counted): libslirp 4.7.0's
// reassembly crashes the process on a single crafted fragment.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "net/net_backend.h"
#include "net/net_counters.h"
#include "net/net_option.h"
#include "net/packet_queue.h"

struct Slirp;

namespace hostvisor::net {

struct SlirpLibrary;

struct SlirpBackendLimits {
  // Frames from the guest waiting for the loop, and frames for the guest
  // waiting for it to read them; beyond either, frames are dropped.
  size_t transmit_queue_packets = 256;
  size_t receive_queue_packets = 1024;
  size_t queue_bytes = 4 << 20;  // per queue
  // Off: slirp answers no DNS query (fuzzing, tests that must not leave the machine).
  bool forward_dns = true;
  // Where slirp sits in its network. The NAT of --net user is QEMU's: the
  // gateway is host 2, DNS host 3, and slirp's DHCP server hands out
  // addresses from host 15. A host-only network's gateway is host 1, and the
  // segment has its own DHCP server (serve_dhcp off; DNS and DHCP's first
  // address then move to the host after the gateway, which slirp never
  // gets a frame for: net/host_only/gateway_filter.h).
  uint32_t gateway_host = 2;
  bool serve_dhcp = true;
};

class SlirpBackend final : public NetBackend {
 public:
  // Starts slirp and binds every forward's host socket. A host port that is
  // taken is an error naming the forward.
  static Result<std::unique_ptr<SlirpBackend>> create(const UserNetOption& option,
                                                      const SlirpBackendLimits& limits = {});
  ~SlirpBackend() override;
  SlirpBackend(const SlirpBackend&) = delete;
  SlirpBackend& operator=(const SlirpBackend&) = delete;

  // NetBackend. send() and receive() may run on any thread.
  std::string_view name() const override { return "user"; }
  Result<void> send(std::span<const iovec> packet) override;
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override;
  int receive_fd() const override { return receive_queue_->event_fd(); }
  uint32_t mtu() const override { return kMtu; }
  bool supports_offloads() const override { return true; }
  Result<void> set_receive_offloads(const ReceiveOffloads& offloads) override;

  // The loop watches service_fd() (EPOLLIN) and calls service() on its thread.
  int service_fd() const override { return epoll_.get(); }
  void service() override;

  std::optional<NetCounters> counters() const override { return counters_.read(); }

  // Forwards added and removed while it runs (a host-only network's
  // gateway takes them from its VMs; the control socket's hostfwd-add);
  // same errors as at create(). remove_forward() matches the protocol, host
  // address and host port, and says whether there was such a forward.
  Result<void> add_forward(const HostForward& forward);
  bool remove_forward(const HostForward& forward);

  // Frames waiting for the guest (at most SlirpBackendLimits::receive_queue_packets).
  size_t receive_queue_size() const { return receive_queue_->size(); }

  // Snapshots: slirp_state_save()/slirp_state_load() serialize slirp's
  // connections and ARP table, prefixed with slirp's state version. Host
  // sockets do not survive a restore: the guest keeps its address and
  // lease, and connections to the outside are reset when next used.
  Result<std::vector<uint8_t>> save_state() override;
  Result<void> load_state(std::span<const uint8_t> state) override;

  static constexpr uint32_t kMtu = 1500;

 private:
  struct Timer;
  struct Callbacks;

  explicit SlirpBackend(const SlirpBackendLimits& limits);
  Result<void> start(const UserNetOption& option);

  void transmit_queued_frames();
  void collect_ready_sockets();
  void run_expired_timers();
  void refill_poll_set();
  void watch_socket(int fd, uint32_t events);
  void forget_socket(int fd);
  void arm_timer(uint32_t timeout_ms);
  static int64_t now_ns();

  SlirpBackendLimits limits_;
  UniqueFd epoll_;
  UniqueFd timer_fd_;
  std::unique_ptr<PacketQueue> transmit_queue_;
  std::unique_ptr<PacketQueue> receive_queue_;
  AtomicNetCounters counters_;
  const SlirpLibrary* lib_ = nullptr;  // set by start(), before slirp_
  Slirp* slirp_ = nullptr;

  // What slirp asked to poll on the last pass (its add_poll indexes are
  // into this), and the ready events seen since.
  struct PolledSocket {
    int fd;
    int slirp_events;  // SLIRP_POLL_*
    int ready_events;  // SLIRP_POLL_*
  };
  std::vector<PolledSocket> polled_;
  // Per fd number: the index in polled_ on the last pass (-1: none), and
  // the epoll events the fd is registered with (0: not in the set).
  std::vector<int32_t> polled_index_by_fd_;
  std::vector<uint32_t> watched_events_by_fd_;
  std::vector<int> watched_fds_;
  bool polled_once_ = false;

  std::vector<std::unique_ptr<Timer>> timers_;
  std::vector<uint8_t> frame_;    // the frame service() is handing to slirp
  std::vector<uint8_t> segment_;  // one segment of a GSO frame
  std::atomic<bool> receive_checksum_offload_{false};
};

}  // namespace hostvisor::net
