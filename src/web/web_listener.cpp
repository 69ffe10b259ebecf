#include "web/web_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor::web {

Result<std::unique_ptr<WebListener>> WebListener::open(
    uint16_t port, api::VmService& service, std::function<api::ConnectionOptions(uint16_t port)> options_for) {
  UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket.valid()) return Error::from_errno("socket");
  const int one = 1;
  (void)::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
    return Error::from_errno("cannot listen on 127.0.0.1:" + std::to_string(port) +
                             " (hostvisor web --port N takes another)");
  if (::listen(socket.get(), 64) != 0) return Error::from_errno("listen on 127.0.0.1:" + std::to_string(port));
  socklen_t length = sizeof(address);
  if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
    return Error::from_errno("getsockname");
  const uint16_t bound = ntohs(address.sin_port);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return Error::from_errno("eventfd");
  std::unique_ptr<WebListener> listener(
      new WebListener(std::move(socket), std::move(stop), bound, service, options_for(bound)));
  listener->thread_ = std::thread([l = listener.get()] { l->accept_loop(); });
  return listener;
}

WebListener::WebListener(UniqueFd socket, UniqueFd stop, uint16_t port, api::VmService& service,
                         api::ConnectionOptions options)
    : socket_(std::move(socket)),
      stop_(std::move(stop)),
      port_(port),
      service_(service),
      options_(std::make_shared<const api::ConnectionOptions>(std::move(options))) {}

WebListener::~WebListener() {
  const uint64_t word = 1;
  (void)::write(stop_.get(), &word, sizeof(word));
  if (thread_.joinable()) thread_.join();
}

void WebListener::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{.fd = socket_.get(), .events = POLLIN, .revents = 0},
                     {.fd = stop_.get(), .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      HV_LOG_ERROR("web console: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    const int fd = ::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // The peer left already (try the next), or no fd is left: wait a
      // little rather than spin on a listener that stays readable.
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    serve(fd);
  }
}

void WebListener::serve(int fd) {
  uint64_t id = 0;
  {
    std::lock_guard lock(connections_->mutex);
    UniqueFd watch(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (connections_->open.size() >= kMaxConnections || !watch.valid()) {
      HV_LOG_WARN_LIMITED("web console: refused a connection: {} already open", connections_->open.size());
      ::close(fd);
      return;
    }
    id = connections_->next_id++;
    connections_->open.emplace(id, std::move(watch));
  }
  std::thread([fd, id, &service = service_, options = options_, connections = connections_] {
    api::serve_tcp_connection(fd, service, *options);
    std::lock_guard lock(connections->mutex);
    connections->open.erase(id);
  }).detach();
}

void WebListener::disconnect_all() {
  std::lock_guard lock(connections_->mutex);
  for (const auto& [id, fd] : connections_->open) ::shutdown(fd.get(), SHUT_RDWR);
}

}  // namespace hostvisor::web
