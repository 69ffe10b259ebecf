// The switch process's event loop: one thread, epoll, a listening unix
// socket, one stream port per connection (QEMU's -netdev stream framing),
// and, with a DHCP network, a DHCP server as one more port. See
// ethernet_switch.h for forwarding and switch_control.h for how a hostvisor
// port negotiates virtio-net headers.
//
// A new connection waits up to hello_wait for its first frame: a Hello makes
// it a headered port (answered by a Welcome), anything else (or silence, as
// from a QEMU guest that has not brought its link up) a plain one. A peer
// that sends a malformed stream is disconnected. Output toward each port is
// queued up to a byte bound; beyond it frames are dropped, and a port whose
// queue has not moved for stall_timeout is disconnected, so a peer that does
// not read is never waited for.
//
// It runs until the last port leaves (or until idle_grace passes with no
// port ever joining). With a lock file, the decision to exit is taken under
// the lock that VMs hold while they connect, so a VM never connects to a
// switch that is about to go away.
//
// With a host gateway (a rootless host-only network, net/host_only/
// host_gateway.h) the gateway is one more port, host 1 of the network, and
// the DHCP server is host 2; ports ask it for host forwards with control
// frames (switch_control.h), which go when the port does.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "net/ipv4_address.h"
#include "net/switch/ethernet_switch.h"

namespace hostvisor::net {

struct SwitchServerOptions {
  std::string socket_path;
  std::string lock_path;  // "": no lock
  std::string log_path;   // removed with the lock file when it ends ("": none)
  std::optional<Ipv4Network> dhcp;
  // A rootless host-only network on this subnet: a host gateway and DHCP
  // (instead of `dhcp`).
  std::optional<Ipv4Network> host_gateway;
  size_t forwards_per_port = 64;
  std::chrono::milliseconds idle_grace{std::chrono::seconds(30)};
  std::chrono::milliseconds hello_wait{500};
  std::chrono::milliseconds stall_timeout{std::chrono::seconds(10)};
  size_t port_output_bytes = 2 << 20;
  size_t max_ports = 128;  // with the queues and read buffers: at most ~300 MiB however peers behave
  EthernetSwitchLimits limits;
};

struct SwitchServerCounters {
  SwitchCounters forwarding;
  uint64_t ports_joined = 0;
  uint64_t ports_disconnected = 0;  // for a bad stream, a write error or a stall
  uint64_t output_dropped = 0;      // frames refused by a full port queue
  uint64_t gateway_refused = 0;     // frames the host gateway kept from its NAT (not for the host)
  uint64_t forwards_added = 0;
  uint64_t forwards_refused = 0;
};

class SwitchServer {
 public:
  // Binds and listens. An error if a switch already answers on the socket.
  static Result<std::unique_ptr<SwitchServer>> create(const SwitchServerOptions& options);
  ~SwitchServer();

  // Serves until the last port leaves or stop() is called.
  Result<void> run();
  // Ends run() from another thread (tests).
  void stop();

  SwitchServerCounters counters() const;

 private:
  class Impl;
  explicit SwitchServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::net
