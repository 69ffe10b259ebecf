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
  // Takes ownership of `socket` and makes it non-blocking.
  static Result<std::unique_ptr<DatagramSocketBackend>> create(UniqueFd socket, uint32_t mtu = 1500);

  std::string_view name() const override { return "socket"; }
  Result<void> send(std::span<const iovec> packet) override;
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override;
  int receive_fd() const override { return socket_.get(); }
  uint32_t mtu() const override { return mtu_; }

 private:
  DatagramSocketBackend(UniqueFd socket, uint32_t mtu) : socket_(std::move(socket)), mtu_(mtu) {}
  UniqueFd socket_;
  uint32_t mtu_;
};

}  // namespace hostvisor::net
