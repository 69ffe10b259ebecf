// A NetBackend on a Linux tap interface (/dev/net/tun, IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR with a 12-byte virtio_net_hdr_v1): the guest's frames appear
// on the host interface and the host's frames for it come back.
//
// A tap never makes the VMM wait, nor hold packets. The fd is non-blocking,
// and what the kernel does with a full tap (measured on Linux 6.x, and
// tested in virtio_net_test.cpp's FullTap tests):
//  - guest to host: a write hands the frame to the host's network stack at
//    once, inside the write; a host side that does not drain (a socket that
//    does not read, a full qdisc) drops it there and counts it (the socket's
//    drops, the qdisc's, the interface's "RX dropped"), and the write still
//    succeeds. The tap's send buffer (TUNSETSNDBUF) never fills, since the
//    stack releases each frame's charge on receiving it. What fails is a
//    tap that is down (EIO, every frame); EAGAIN/ENOBUFS are handled the
//    same way should a kernel return them. Each is a dropped packet,
//    counted here (counters()) and by the device.
//  - host to guest: while the guest posts no receive buffers virtio-net
//    stops reading, and the kernel holds at most txqueuelen frames in the
//    tap's queue, dropping the rest (the interface's "TX dropped", shown by
//    `ip -s link show TAP`).
#pragma once

#include <memory>
#include <string>

#include "base/fd.h"
#include "net/net_backend.h"

namespace hostvisor::net {

class TapBackend final : public NetBackend {
 public:
  // Attaches to the tap interface `ifname` (created if it does not exist,
  // which needs CAP_NET_ADMIN; an existing persistent tap owned by the user
  // does not). Errors say what to do: load the tun module, run with
  // CAP_NET_ADMIN, or create the tap with `ip tuntap add`.
  static Result<std::unique_ptr<TapBackend>> open(const std::string& ifname);

  std::string_view name() const override { return name_; }
  const std::string& interface_name() const { return ifname_; }
  Result<void> send(std::span<const iovec> packet) override;
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override;
  // One readv into the caller's buffers (the guest's, from virtio-net).
  bool receives_in_place() const override { return true; }
  Result<std::optional<size_t>> receive_in_place(std::span<const iovec> buffers) override;
  int receive_fd() const override { return fd_.get(); }
  uint32_t mtu() const override { return mtu_; }
  // Linux taps with vnet headers take partial checksums and GSO from us and,
  // after TUNSETOFFLOAD, hand them to us; probed when the tap is opened.
  bool supports_offloads() const override { return offloads_; }
  Result<void> set_receive_offloads(const ReceiveOffloads& offloads) override;
  // tx: frames the tap took and those it refused (dropped); rx: frames read.
  std::optional<NetCounters> counters() const override { return counters_.read(); }
  // A host-only network's VM keeps a connection to the network's server
  // open for as long as its tap lives (host_only_port.h).
  void keep_membership(UniqueFd connection) { membership_ = std::move(connection); }

 private:
  TapBackend(UniqueFd fd, std::string ifname, uint32_t mtu, bool offloads)
      : fd_(std::move(fd)), ifname_(std::move(ifname)), name_("tap " + ifname_), mtu_(mtu), offloads_(offloads) {}
  UniqueFd fd_;
  std::string ifname_;
  std::string name_;
  uint32_t mtu_;
  bool offloads_;
  UniqueFd membership_;
  AtomicNetCounters counters_;
};

}  // namespace hostvisor::net
