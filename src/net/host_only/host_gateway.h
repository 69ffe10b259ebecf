// The host's side of a rootless host-only network: a port of the network's
// switch process (so it outlives any one VM) that is a NAT restricted to
// the host. Frames from the segment pass the gateway filter
// (gateway_filter.h: IPv4 to the gateway's address, ARP about it) and go to
// a libslirp instance whose own address is the gateway, host 1 of the
// network; slirp maps connections to that address to the host's loopback,
// so a VM reaches the host's own services at the gateway's address, and no
// frame for any other address ever reaches slirp: nothing is routed beyond
// the host. Host port forwards (hostfwd=) bring host connections to a VM's
// address; the switch adds and removes them for its ports. No DHCP, DNS or
// IPv6 here: the switch's DHCP server hands out the addresses.
//
// One thread: the switch's loop calls deliver() (which only queues), and
// service() and receive() when the fds below are readable.
#pragma once

#include <memory>
#include <optional>
#include <span>

#include "base/result.h"
#include "net/host_forward.h"
#include "net/ipv4_address.h"
#include "net/slirp/slirp_backend.h"
#include "net/switch/ethernet_switch.h"

namespace hostvisor::net {

class HostGateway final : public SwitchPortSink {
 public:
  // The gateway is host 1 of `network`.
  static Result<std::unique_ptr<HostGateway>> create(const Ipv4Network& network);

  // How it joins the switch: slirp completes checksums and cuts TSO frames
  // itself, so guests' large frames reach it whole.
  static constexpr SwitchPortMode kPortMode{true, {true, true, true, false}};

  Ipv4Address address() const { return network_.host(1); }

  // SwitchPortSink: a frame from the segment; what the filter refuses is
  // dropped and counted.
  void deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) override;

  // Readable when slirp has work (sockets, timers, frames from the segment):
  // call service().
  int service_fd() const { return slirp_->service_fd(); }
  void service() { slirp_->service(); }
  // Readable while slirp has frames for the segment: receive() takes one
  // (virtio-net header + frame, as NetBackend::receive()).
  int receive_fd() const { return slirp_->receive_fd(); }
  std::optional<size_t> receive(std::span<uint8_t> packet);

  // A forward from a host port to `forward.guest_address` (which must be
  // set, inside the network). An error names a host port that is taken.
  Result<void> add_forward(const HostForward& forward);
  void remove_forward(const HostForward& forward) { slirp_->remove_forward(forward); }

  // Frames the filter kept from slirp.
  uint64_t refused() const { return refused_; }

 private:
  HostGateway(const Ipv4Network& network, std::unique_ptr<SlirpBackend> slirp)
      : network_(network), slirp_(std::move(slirp)) {}

  Ipv4Network network_;
  std::unique_ptr<SlirpBackend> slirp_;
  uint64_t refused_ = 0;
};

}  // namespace hostvisor::net
