// A NetBackend over a datagram socket (SOCK_SEQPACKET or SOCK_DGRAM unix
// socket, e.g. one end of a socketpair): each datagram is one packet,
// virtio_net_hdr_v1 + frame. Connects two VMs' NICs back to back, or a NIC to
// a test.
#pragma once

#include <memory>

#include "base/fd.h"
#include "net/net_backend.h"

namespace hostvisor::net {

class DatagramSocketBackend final : public NetBackend {
 public:
  // Takes ownership of `socket` and makes it non-blocking. `offloads`: the
  // peer finishes partial checksums and segments GSO packets itself, and
  // honours set_receive_offloads() (the peer reads it from
  // receive_offloads()); off, every header crossing the socket is plain.
  static Result<std::unique_ptr<DatagramSocketBackend>> create(UniqueFd socket, uint32_t mtu = 1500,
                                                               bool offloads = false);

  std::string_view name() const override { return "socket"; }
  Result<void> send(std::span<const iovec> packet) override;
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override;
  int receive_fd() const override { return socket_.get(); }
  uint32_t mtu() const override { return mtu_; }
  bool supports_offloads() const override { return offloads_; }
  Result<void> set_receive_offloads(const ReceiveOffloads& offloads) override;
  const ReceiveOffloads& receive_offloads() const { return receive_offloads_; }

 private:
  DatagramSocketBackend(UniqueFd socket, uint32_t mtu, bool offloads)
      : socket_(std::move(socket)), mtu_(mtu), offloads_(offloads) {}
  UniqueFd socket_;
  uint32_t mtu_;
  bool offloads_;
  ReceiveOffloads receive_offloads_;
};

}  // namespace hostvisor::net
