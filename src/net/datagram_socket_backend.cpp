#include "net/datagram_socket_backend.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

namespace hostvisor::net {

Result<std::unique_ptr<DatagramSocketBackend>> DatagramSocketBackend::create(UniqueFd socket, uint32_t mtu,
                                                                             bool offloads) {
  const int flags = ::fcntl(socket.get(), F_GETFL);
  if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return Error::from_errno("making the network socket non-blocking");
  return std::unique_ptr<DatagramSocketBackend>(new DatagramSocketBackend(std::move(socket), mtu, offloads));
}

Result<void> DatagramSocketBackend::set_receive_offloads(const ReceiveOffloads& offloads) {
  if (!offloads_) return NetBackend::set_receive_offloads(offloads);
  receive_offloads_ = offloads;
  return ok();
}

Result<void> DatagramSocketBackend::send(std::span<const iovec> packet) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(packet.data());
  msg.msg_iovlen = packet.size();
  for (;;) {
    if (::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL) >= 0) return ok();
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == ENOBUFS) return Error(ErrorCode::kBusy, "network socket is full; packet dropped");
    return Error::from_errno("sending a packet on the network socket");
  }
}

Result<std::optional<size_t>> DatagramSocketBackend::receive(std::span<uint8_t> buffer) {
  for (;;) {
    const ssize_t n = ::recv(socket_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    // A packet is at least a header; zero bytes is a closed SEQPACKET peer,
    // which would otherwise look readable forever.
    if (n == 0) return Error(ErrorCode::kIo, "the other end of the network socket closed it");
    if (n > 0) return std::optional<size_t>(static_cast<size_t>(n));
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return std::optional<size_t>();
    return Error::from_errno("receiving a packet from the network socket");
  }
}

}  // namespace hostvisor::net
