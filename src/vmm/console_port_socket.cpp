#include "vmm/console_port_socket.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor {

namespace {

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return Error(ErrorCode::kInvalidArgument, "socket path empty or too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A socket file nobody listens on any more (a VM that was killed) may be
// replaced; a live one or any other file may not.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return ok();
  if (!S_ISSOCK(st.st_mode)) return Error(ErrorCode::kBusy, path + " exists and is not a socket");
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (probe.valid() && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
    return Error(ErrorCode::kBusy, path + " is in use by another process");
  if (::unlink(path.c_str()) != 0) return Error::from_errno("remove the stale socket " + path);
  return ok();
}

}  // namespace

Result<std::unique_ptr<ConsolePortSocket>> ConsolePortSocket::listen(const std::string& path) {
  const sockaddr_un addr = HV_TRY(socket_address(path));
  HV_TRY(clear_stale_socket(path, addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::from_errno("socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return Error::from_errno("cannot listen on " + path);
  if (::listen(fd.get(), 4) != 0) return Error::from_errno("listen on " + path);
  return std::unique_ptr<ConsolePortSocket>(new ConsolePortSocket(path, std::move(fd)));
}

ConsolePortSocket::~ConsolePortSocket() {
  if (loop_) {
    loop_->remove(listener_.get());
    if (console_) loop_->remove(console_->input_space_fd(port_));
    if (watching_) loop_->remove(client_fd_);
  }
  {
    std::lock_guard lock(client_->mutex);
    client_->fd = UniqueFd();
  }
  ::unlink(path_.c_str());
}

VirtioConsole::OutputSink ConsolePortSocket::sink() const {
  return [client = client_](std::span<const uint8_t> bytes) {
    std::lock_guard lock(client->mutex);
    if (!client->fd.valid()) return false;
    while (!bytes.empty()) {
      const ssize_t n = ::send(client->fd.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // full or gone: the device drops and counts it
      bytes = bytes.subspan(static_cast<size_t>(n));
    }
    return true;
  };
}

Result<void> ConsolePortSocket::attach(EventLoop& loop, std::shared_ptr<VirtioConsole> console, uint32_t port) {
  loop_ = &loop;
  console_ = std::move(console);
  port_ = port;
  HV_TRY(loop.add(listener_.get(), [this](uint32_t) { on_accept(); }));
  HV_TRY(loop.add(console_->input_space_fd(port_), [this](uint32_t) { on_space(); }));
  return ok();
}

void ConsolePortSocket::on_accept() {
  UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd.valid()) return;
  if (client_fd_ >= 0) {
    // One conversation at a time: a second client would interleave its
    // requests with the first's, and each would read the other's replies.
    HV_LOG_WARN("{}: a client is already connected; turned another away", path_);
    return;
  }
  // Room for a large reply (qemu-ga's guest-exec-status) while the client reads.
  const int buffer = 1 << 20;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  client_fd_ = fd.get();
  {
    std::lock_guard lock(client_->mutex);
    client_->fd = std::move(fd);
  }
  if (!watch_client(true)) return disconnect();
  console_->set_host_open(port_, true);
}

bool ConsolePortSocket::watch_client(bool read) {
  if (watching_) loop_->remove(client_fd_);
  // Not reading: only a hang-up (edge-triggered, so a half-closed client
  // does not wake the loop over and over).
  watching_ = loop_->add(client_fd_, [this](uint32_t events) { on_client_event(events); }, read ? EPOLLIN : EPOLLET).ok();
  reading_ = watching_ && read;
  return watching_;
}

void ConsolePortSocket::on_client_event(uint32_t events) {
  if (!reading_) {
    if (events & (EPOLLHUP | EPOLLERR)) disconnect();
    return;
  }
  const size_t room = console_->input_room(port_);
  if (room == 0) {
    // Stop reading until the guest takes some: the client's writes block.
    watch_client(false);
    return;
  }
  uint8_t buffer[4096];
  const ssize_t n = ::recv(client_fd_, buffer, std::min(room, sizeof buffer), 0);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) return disconnect();
  const size_t taken = console_->enqueue_input(port_, std::span(buffer, static_cast<size_t>(n)));
  if (taken != static_cast<size_t>(n)) HV_LOG_WARN_LIMITED("{}: the port took {} of {} bytes", path_, taken, n);
}

void ConsolePortSocket::on_space() {
  uint64_t value;
  [[maybe_unused]] ssize_t r = ::read(console_->input_space_fd(port_), &value, sizeof value);
  if (client_fd_ >= 0 && !reading_ && !watch_client(true)) disconnect();
}

void ConsolePortSocket::disconnect() {
  if (watching_) loop_->remove(client_fd_);
  watching_ = reading_ = false;
  client_fd_ = -1;
  {
    std::lock_guard lock(client_->mutex);
    client_->fd = UniqueFd();
  }
  console_->set_host_open(port_, false);
}

}  // namespace hostvisor
