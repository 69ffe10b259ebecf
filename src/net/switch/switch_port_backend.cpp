#include "net/switch/switch_port_backend.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "net/switch/switch_control.h"

namespace hostvisor::net {

namespace {
constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
constexpr int kSocketBuffer = 1 << 20;
}  // namespace

SwitchPortBackend::SwitchPortBackend(UniqueFd socket, const SwitchPortOptions& options)
    : socket_(std::move(socket)),
      label_((options.host_only ? "hostonly " : "internal ") + options.name),
      options_(options),
      send_queue_(options.send_queue_bytes),
      reader_(kEthernetHeaderSize, kMaxPlainFrameSize) {}

Result<std::unique_ptr<SwitchPortBackend>> SwitchPortBackend::open(UniqueFd socket, const SwitchPortOptions& options) {
  std::unique_ptr<SwitchPortBackend> backend(new SwitchPortBackend(std::move(socket), options));
  ::setsockopt(backend->socket_.get(), SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
  ::setsockopt(backend->socket_.get(), SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
  HV_TRY(backend->handshake());
  backend->receive_epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  backend->send_epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!backend->receive_epoll_.valid() || !backend->send_epoll_.valid()) return Error::from_errno("epoll_create1");
  epoll_event ev{EPOLLIN, {.fd = backend->socket_.get()}};
  if (::epoll_ctl(backend->receive_epoll_.get(), EPOLL_CTL_ADD, backend->socket_.get(), &ev) != 0)
    return Error::from_errno("epoll_ctl");
  return backend;
}

Result<void> SwitchPortBackend::write_all(std::span<const uint8_t> bytes,
                                          std::chrono::steady_clock::time_point deadline) {
  for (size_t at = 0; at < bytes.size();) {
    const ssize_t n = ::send(socket_.get(), bytes.data() + at, bytes.size() - at, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return Error::from_errno("writing to the switch of " + options_.name);
    if (n > 0) at += static_cast<size_t>(n);
    if (at == bytes.size()) break;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{socket_.get(), POLLOUT, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return Error(ErrorCode::kIo, "the switch of network " + options_.name + " did not answer within 5 s");
  }
  return ok();
}

Result<std::span<const uint8_t>> SwitchPortBackend::next_frame(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto frame = reader_.next();
    if (!frame) return frame.error().with_context("the switch of network " + options_.name);
    if (*frame) return **frame;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{socket_.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return Error(ErrorCode::kIo, "the switch of network " + options_.name + " did not answer within 5 s");
    const auto space = reader_.free_space();
    const ssize_t n = ::recv(socket_.get(), space.data(), space.size(), MSG_DONTWAIT);
    if (n == 0) return Error(ErrorCode::kIo, "the switch of network " + options_.name + " closed the connection");
    if (n < 0 && errno != EAGAIN && errno != EINTR) return Error::from_errno("reading from the switch");
    if (n > 0) reader_.commit(static_cast<size_t>(n));
  }
}

Result<void> SwitchPortBackend::handshake() {
  const auto deadline = std::chrono::steady_clock::now() + kHandshakeTimeout;
  // Hello, as a plain frame: the first thing the switch reads from us.
  SwitchControl greeting;
  greeting.type = SwitchControlType::kHello;
  greeting.mac = options_.mac;
  const auto hello = encode_switch_control(greeting);
  const auto prefix = encode_stream_length(static_cast<uint32_t>(hello.size()));
  std::vector<uint8_t> bytes(prefix.begin(), prefix.end());
  bytes.insert(bytes.end(), hello.begin(), hello.end());
  HV_TRY(write_all(bytes, deadline));
  // The Welcome is the first frame the switch sends us.
  const auto welcome = decode_switch_control(HV_TRY(next_frame(deadline)));
  if (!welcome || welcome->type != SwitchControlType::kWelcome)
    return Error(ErrorCode::kIo, "the socket of network " + options_.name +
                                     " is not a hostvisor switch (its first frame was not a Welcome)");
  if (welcome->mac_in_use)
    return Error(ErrorCode::kBusy, "MAC " + format_mac_address(options_.mac) + " is already on network " +
                                       options_.name +
                                       " (another run of the same VM derives the same MAC): give this NIC "
                                       "its own mac=");
  switch_dhcp_ = welcome->dhcp;
  if (options_.host_only && !welcome->gateway)
    return Error(ErrorCode::kIo, "the socket of host-only network " + options_.name +
                                     " is not a rootless host-only network's switch (it has no host gateway)");
  if (options_.dhcp) {
    const std::string wanted = format_ipv4_network(*options_.dhcp);
    if (switch_dhcp_ != wanted && options_.host_only)
      return Error(ErrorCode::kBusy, "host-only network " + options_.name + " is running on " + switch_dhcp_ +
                                         "; leave net= out or give that");
    if (switch_dhcp_ != wanted)
      return Error(ErrorCode::kInvalidArgument,
                   "network " + options_.name + " is already running " +
                       (switch_dhcp_.empty() ? "without DHCP" : "with dhcp=" + switch_dhcp_) + ", not dhcp=" + wanted +
                       ": give the same dhcp= as the VM that started it, or leave it out");
  }
  reader_.set_limits(kVnetHeaderSize + kEthernetHeaderSize, kMaxPacketSize);
  return ask_forwards();
}

Result<void> SwitchPortBackend::ask_forwards() {
  for (const HostForward& wanted : options_.forwards) {
    const auto deadline = std::chrono::steady_clock::now() + kHandshakeTimeout;
    SwitchControl request;
    request.type = SwitchControlType::kForward;
    request.forward = wanted;
    const auto control = encode_switch_control(request);
    const auto prefix = encode_stream_length(static_cast<uint32_t>(kVnetHeaderSize + control.size()));
    std::vector<uint8_t> bytes(prefix.begin(), prefix.end());
    bytes.resize(bytes.size() + kVnetHeaderSize, 0);
    bytes.insert(bytes.end(), control.begin(), control.end());
    HV_TRY(write_all(bytes, deadline));
    // Frames of the segment may come first (the guest is not running yet:
    // they are nobody's loss).
    for (;;) {
      const auto packet = HV_TRY(next_frame(deadline));
      const auto result = decode_switch_control(packet.subspan(kVnetHeaderSize));
      if (!result || result->type != SwitchControlType::kForwardResult) continue;
      if (!result->text.empty()) return Error(ErrorCode::kBusy, result->text);
      forwards_.push_back(result->forward);
      break;
    }
  }
  return ok();
}

void SwitchPortBackend::lose_link(const std::string& why) {
  if (link_lost_.exchange(true)) return;
  HV_LOG_WARN("{}: lost the switch ({}); the NIC has no link from now on", label_, why);
  ::epoll_ctl(receive_epoll_.get(), EPOLL_CTL_DEL, socket_.get(), nullptr);
  ::epoll_ctl(send_epoll_.get(), EPOLL_CTL_DEL, socket_.get(), nullptr);
}

void SwitchPortBackend::watch_writable(bool want) {
  if (watching_writable_ == want || link_lost_) return;
  epoll_event ev{EPOLLOUT, {.fd = socket_.get()}};
  if (::epoll_ctl(send_epoll_.get(), want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, socket_.get(), &ev) == 0)
    watching_writable_ = want;
}

Result<void> SwitchPortBackend::send_locked(std::span<const iovec> packet) {
  size_t length = 0;
  for (const iovec& part : packet) length += part.iov_len;
  if (length < kVnetHeaderSize + kEthernetHeaderSize || length > kMaxPacketSize) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kInvalidArgument, "a packet of " + std::to_string(length) + " bytes");
  }
  if (link_lost_) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kIo, label_ + " has no link (the switch is gone)");
  }
  const auto prefix = encode_stream_length(static_cast<uint32_t>(length));
  size_t written = 0;
  if (send_queue_.empty()) {
    // The common case: straight to the socket, no copy.
    iovec parts[8];
    if (packet.size() + 1 <= std::size(parts)) {
      parts[0] = {const_cast<uint8_t*>(prefix.data()), prefix.size()};
      for (size_t i = 0; i < packet.size(); ++i) parts[i + 1] = packet[i];
      msghdr msg{};
      msg.msg_iov = parts;
      msg.msg_iovlen = packet.size() + 1;
      const ssize_t n = ::sendmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        lose_link(std::strerror(errno));
        counters_.count_tx_drop();
        return Error::from_errno("sending to the switch");
      }
      if (n > 0) written = static_cast<size_t>(n);
      if (written == prefix.size() + length) {
        counters_.count_tx(length - kVnetHeaderSize);
        return ok();
      }
    }
  }
  // The rest waits: a stream cannot drop half a frame, so a partly written
  // one is always queued, even past the bound.
  std::vector<uint8_t> rest;
  rest.reserve(prefix.size() + length - written);
  size_t skip = written;
  auto append = [&](const uint8_t* p, size_t n) {
    const size_t s = std::min(skip, n);
    skip -= s;
    rest.insert(rest.end(), p + s, p + n);
  };
  append(prefix.data(), prefix.size());
  for (const iovec& part : packet) append(static_cast<const uint8_t*>(part.iov_base), part.iov_len);
  if (written == 0 && send_queue_.bytes() + rest.size() > send_queue_.max_bytes()) {
    counters_.count_tx_drop();
    return Error(ErrorCode::kBusy, label_ + ": the switch is not keeping up; packet dropped");
  }
  send_queue_.push_raw(rest);
  counters_.count_tx(length - kVnetHeaderSize);
  watch_writable(true);
  return ok();
}

Result<void> SwitchPortBackend::send(std::span<const iovec> packet) {
  std::lock_guard lock(send_mutex_);
  if (!send_queue_.empty()) {
    if (auto flushed = send_queue_.flush(socket_.get()); !flushed) lose_link(flushed.error().message());
  }
  return send_locked(packet);
}

void SwitchPortBackend::service() {
  std::lock_guard lock(send_mutex_);
  if (auto flushed = send_queue_.flush(socket_.get()); !flushed) lose_link(flushed.error().message());
  if (send_queue_.empty()) watch_writable(false);
}

Result<void> SwitchPortBackend::set_receive_offloads(const ReceiveOffloads& offloads) {
  SwitchControl update;
  update.type = SwitchControlType::kOffloads;
  update.offloads = offloads;
  const auto control = encode_switch_control(update);
  const VirtioNetHeader header{};
  const iovec parts[2] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                          {const_cast<uint8_t*>(control.data()), control.size()}};
  std::lock_guard lock(send_mutex_);
  return send_locked(parts);
}

Result<std::optional<size_t>> SwitchPortBackend::receive(std::span<uint8_t> buffer) {
  std::lock_guard lock(receive_mutex_);
  for (;;) {
    if (link_lost_) return std::optional<size_t>();
    auto frame = reader_.next();
    if (!frame) {
      lose_link("a malformed stream: " + frame.error().message());
      return std::optional<size_t>();
    }
    if (*frame) {
      const auto packet = **frame;
      if (decode_switch_control(packet.subspan(kVnetHeaderSize))) continue;  // nothing for the guest
      const size_t n = std::min(packet.size(), buffer.size());
      std::memcpy(buffer.data(), packet.data(), n);
      counters_.count_rx(packet.size() - kVnetHeaderSize);
      return std::optional<size_t>(n);
    }
    const auto space = reader_.free_space();
    const ssize_t n = ::recv(socket_.get(), space.data(), space.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<size_t>();
      lose_link(std::strerror(errno));
      return std::optional<size_t>();
    }
    if (n == 0) {
      lose_link("it closed the connection");
      return std::optional<size_t>();
    }
    reader_.commit(static_cast<size_t>(n));
  }
}

}  // namespace hostvisor::net
