// A NIC's backend on an internal network: a port of the network's switch
// process over a unix stream socket (-netdev stream framing). At open it
// negotiates virtio-net headers (switch_control.h), so the guest's partial
// checksums and 64 KiB TSO frames go to the switch as they are and reach
// another hostvisor guest unsegmented; the switch does the software work
// for peers without offloads. When the guest's driver takes receive
// offloads, the backend tells the switch, which then stops segmenting
// toward it.
//
// Never blocks: send() writes to the socket, and what the socket does not
// take waits in a bounded queue that service() drains when the socket is
// writable (service_fd()); a packet that does not fit is dropped and
// counted. receive() reads and decodes frames from the socket (receive_fd()
// is readable while the socket has bytes). If the switch goes away the NIC
// loses its link: sends are dropped, nothing is received, and it says so
// once in the log.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "net/host_forward.h"
#include "net/ipv4_address.h"
#include "net/mac_address.h"
#include "net/net_backend.h"
#include "net/net_counters.h"
#include "net/switch/stream_framing.h"
#include "net/switch/stream_output_queue.h"

namespace hostvisor::net {

struct SwitchPortOptions {
  std::string name;                 // the network, for messages
  MacAddress mac{};                 // the NIC's, announced to the switch
  std::optional<Ipv4Network> dhcp;  // what the VM asked for: must match the switch's
  // A rootless host-only network's port (net/host_only/host_only_port.h):
  // the switch must have a host gateway, `dhcp` is the net= asked for, and
  // each of `forwards` is asked of the gateway at open (an error if one
  // cannot be put in place).
  bool host_only = false;
  std::vector<HostForward> forwards{};
  size_t send_queue_bytes = 2 << 20;
};

class SwitchPortBackend final : public NetBackend {
 public:
  // Takes a connected stream socket to a switch and negotiates headers.
  static Result<std::unique_ptr<SwitchPortBackend>> open(UniqueFd socket, const SwitchPortOptions& options);

  std::string_view name() const override { return label_; }
  Result<void> send(std::span<const iovec> packet) override;
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override;
  int receive_fd() const override { return receive_epoll_.get(); }
  uint32_t mtu() const override { return 1500; }
  bool supports_offloads() const override { return true; }
  Result<void> set_receive_offloads(const ReceiveOffloads& offloads) override;
  int service_fd() const override { return send_epoll_.get(); }
  void service() override;
  std::optional<NetCounters> counters() const override { return counters_.read(); }

  // What the switch said at open: its network ("" for none) and the
  // forwards in place, each with the guest address the gateway chose.
  const std::string& switch_network() const { return switch_dhcp_; }
  const std::vector<HostForward>& forwards() const { return forwards_; }

 private:
  SwitchPortBackend(UniqueFd socket, const SwitchPortOptions& options);
  Result<void> handshake();
  Result<void> ask_forwards();
  // The next frame from the switch, waiting until `deadline`.
  Result<std::span<const uint8_t>> next_frame(std::chrono::steady_clock::time_point deadline);
  Result<void> write_all(std::span<const uint8_t> bytes, std::chrono::steady_clock::time_point deadline);
  // Queues (or writes) one framed packet; the caller holds send_mutex_.
  Result<void> send_locked(std::span<const iovec> packet);
  void watch_writable(bool want);
  void lose_link(const std::string& why);

  UniqueFd socket_;
  std::string label_;
  SwitchPortOptions options_;
  std::string switch_dhcp_;
  std::vector<HostForward> forwards_;
  UniqueFd receive_epoll_, send_epoll_;
  AtomicNetCounters counters_;

  std::mutex send_mutex_;
  StreamOutputQueue send_queue_;
  bool watching_writable_ = false;

  std::mutex receive_mutex_;
  StreamFrameReader reader_;
  std::atomic<bool> link_lost_{false};
};

}  // namespace hostvisor::net
