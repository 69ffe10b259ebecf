#include "control/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::control {

struct ControlServer::Connection {
  explicit Connection(UniqueFd socket) : fd(std::move(socket)) {}
  UniqueFd fd;
  LineSplitter lines;  // the server thread's only
  // The rest under mutex (replies and console output come from other threads).
  std::mutex mutex;
  std::string out;
  bool busy = false;        // a request waits for its reply
  bool subscribed = false;  // gets events
  bool console = false;     // raw console bytes from now on
  uint64_t console_id = 0;
  bool eof = false;      // the peer sent all it will: answer its lines, then close
  bool closing = false;  // close once no reply is due and `out` is sent
  bool closed = false;
  uint32_t interest = EPOLLIN;  // what epoll watches the fd for
  uint64_t console_dropped = 0;
};

namespace {

// Keeps a request's reply until it is sent; one never sent says why.
struct PendingReply {
  std::function<void(const std::string&)> send;
  json id;
  bool sent = false;
  ~PendingReply() {
    if (!sent)
      send(error_reply(id, WireError::kBusy, "the VM stopped before it could do this; ask again once it runs"));
  }
};

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return Error(ErrorCode::kInvalidArgument, "--control " + path + ": a unix socket path must be 1 to " +
                                                  std::to_string(sizeof(addr.sun_path) - 1) + " bytes long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, ServerHooks hooks) {
  HV_TRY(unix_address(path));  // the final path must fit a socket address too
  // Bound under a temporary name, made 0600, then renamed into place: a
  // client never finds the path with a socket that is not ready (or not
  // private) behind it.
  const std::string temp = path + "." + std::to_string(::getpid()) + ".tmp";
  sockaddr_un addr = HV_TRY(unix_address(temp));
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener.valid()) return Error::from_errno("--control: socket");
  ::unlink(temp.c_str());
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return Error::from_errno("--control: cannot create a socket at " + temp);
  auto fail = [&](const std::string& what) {
    Error error = Error::from_errno(what);
    ::unlink(temp.c_str());
    return error;
  };
  if (::chmod(temp.c_str(), 0600) != 0) return fail("--control: chmod " + temp);
  if (::listen(listener.get(), 16) != 0) return fail("--control: listen");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("--control: cannot rename the socket to " + path);

  auto cleanup = [&](Error error) {
    ::unlink(path.c_str());
    return error;
  };
  auto wake = EventFd::create(0, EFD_NONBLOCK);
  if (!wake) return cleanup(std::move(wake).error());
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return cleanup(Error::from_errno("--control: epoll_create1"));
  for (int fd : {listener.get(), wake->fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      return cleanup(Error::from_errno("--control: epoll_ctl"));
  }
  std::unique_ptr<ControlServer> server(
      new ControlServer(path, std::move(listener), std::move(*wake), std::move(epoll), std::move(hooks)));
  server->thread_ = std::thread([self = server.get()] { self->run(); });
  return server;
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::run() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kControl);
  epoll_event events[32];
  while (!stopping_.load()) {
    const int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      HV_LOG_ERROR("control socket: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener_.get()) {
        accept_connections();
      } else if (fd == wake_.fd()) {
        wake_.consume();
      } else {
        std::shared_ptr<Connection> connection;
        {
          std::lock_guard lock(connections_mutex_);
          if (auto it = connections_.find(fd); it != connections_.end()) connection = it->second;
        }
        if (!connection) continue;
        if (events[i].events & (EPOLLHUP | EPOLLERR)) {
          // Gone both ways: a reply due would have nowhere to go (the
          // operation itself still completes in the VM).
          on_readable(connection);
          close_connection(connection);
        } else if (events[i].events & EPOLLIN) {
          on_readable(connection);
        }
      }
    }
    // Replies, events and console output queued by other threads; lines
    // that waited for a reply.
    std::vector<std::shared_ptr<Connection>> all;
    {
      std::lock_guard lock(connections_mutex_);
      for (auto& [fd, connection] : connections_) all.push_back(connection);
    }
    for (auto& connection : all) {
      process_lines(connection);
      flush(connection);
    }
  }
}

void ControlServer::accept_connections() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) HV_LOG_WARN("control socket: accept: {}", std::strerror(errno));
      return;
    }
    // Only this user: anyone else is closed without a word.
    ucred peer{};
    socklen_t length = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 || peer.uid != ::geteuid()) {
      HV_LOG_WARN_LIMITED("control socket: refused a connection from uid {} (only uid {} may drive this VM)", peer.uid,
                          ::geteuid());
      continue;
    }
    std::lock_guard lock(connections_mutex_);
    if (connections_.size() >= kMaxConnections) {
      HV_LOG_WARN("control socket: {} clients are connected already; refused one more", kMaxConnections);
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) continue;
    const int key = fd.get();
    connections_[key] = std::make_shared<Connection>(std::move(fd));
  }
}

void ControlServer::on_readable(const std::shared_ptr<Connection>& connection) {
  char buffer[16384];
  for (;;) {
    bool console;
    {
      std::lock_guard lock(connection->mutex);
      // While a request is in flight the peer's next lines wait in its
      // socket buffer, so a client sending far ahead grows nothing here.
      if (connection->busy || connection->eof || connection->closing || connection->closed) return;
      console = connection->console;
    }
    const ssize_t n = ::read(connection->fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 || (n == 0 && console)) {
      close_connection(connection);
      return;
    }
    if (n == 0) {
      std::lock_guard lock(connection->mutex);
      connection->eof = true;
    } else if (console) {
      if (hooks_.console_input)
        hooks_.console_input(std::span(reinterpret_cast<const uint8_t*>(buffer), static_cast<size_t>(n)));
      continue;
    } else {
      connection->lines.feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
    process_lines(connection);
  }
}

void ControlServer::process_lines(const std::shared_ptr<Connection>& connection) {
  std::string line;
  for (;;) {
    {
      std::lock_guard lock(connection->mutex);
      if (connection->busy || connection->console || connection->closing || connection->closed) return;
    }
    switch (connection->lines.next(line)) {
      case LineSplitter::Status::kNeedMore: {
        std::lock_guard lock(connection->mutex);
        if (connection->eof) connection->closing = true;
        return;
      }
      case LineSplitter::Status::kTooLong: {
        send(*connection, error_reply(nullptr, WireError::kInvalidArgument,
                                      "a request line is longer than 64 KiB; closing the connection"));
        std::lock_guard lock(connection->mutex);
        connection->closing = true;
        return;
      }
      case LineSplitter::Status::kLine: break;
    }
    json id;
    auto request = parse_request(line, &id);
    if (!request) {
      send(*connection, error_reply(id, WireError::kInvalidArgument, request.error().message()));
      continue;
    }
    dispatch(connection, std::move(*request));
  }
}

void ControlServer::dispatch(const std::shared_ptr<Connection>& connection, Request request) {
  if (request.op == "subscribe") {
    std::lock_guard lock(connection->mutex);
    connection->out += ok_reply(request.id, json::object());
    if (!connection->subscribed && hooks_.current_state) {
      json event = hooks_.current_state();
      event["reason"] = "subscribed";
      connection->out += event_line(std::move(event));
    }
    connection->subscribed = true;
    return;
  }
  if (request.op == "console") {
    auto replay = bool_arg(request.args, "replay", false);
    if (!replay) {
      send(*connection, error_reply(request.id, WireError::kInvalidArgument, replay.error().message()));
      return;
    }
    if (!hooks_.attach_console) {
      send(*connection, error_reply(request.id, WireError::kNotSupported, "this VM has no console to attach to"));
      return;
    }
    {
      std::lock_guard lock(connection->mutex);
      connection->out += ok_reply(request.id, json::object());
      connection->console = true;
      connection->subscribed = false;  // no JSON on it from now on
    }
    // The sink holds the connection weakly: a closed one just stops taking.
    std::weak_ptr<Connection> weak = connection;
    const uint64_t id = hooks_.attach_console(
        [this, weak](std::span<const uint8_t> bytes) {
          auto target = weak.lock();
          if (!target) return;
          {
            std::lock_guard lock(target->mutex);
            if (target->closed) return;
            // A reader that does not keep up loses output; the guest never waits.
            if (target->out.size() + bytes.size() > kMaxConsoleBacklog) {
              target->console_dropped += bytes.size();
              return;
            }
            target->out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
          }
          wake_.signal();
        },
        *replay);
    {
      std::lock_guard lock(connection->mutex);
      connection->console_id = id;
    }
    // Bytes the client sent right behind the request are the guest's.
    const std::string rest = connection->lines.take_rest();
    if (!rest.empty() && hooks_.console_input)
      hooks_.console_input(std::span(reinterpret_cast<const uint8_t*>(rest.data()), rest.size()));
    return;
  }
  {
    std::lock_guard lock(connection->mutex);
    connection->busy = true;
  }
  auto pending = std::make_shared<PendingReply>();
  pending->id = request.id;
  std::weak_ptr<Connection> weak = connection;
  pending->send = [this, weak](const std::string& line) {
    auto target = weak.lock();
    if (!target) return;
    {
      std::lock_guard lock(target->mutex);
      target->busy = false;
      if (target->closed) return;
      target->out += line;
    }
    wake_.signal();
  };
  Reply reply = [pending](Result<json> result) {
    if (pending->sent) return;
    pending->sent = true;
    if (result)
      pending->send(ok_reply(pending->id, std::move(*result)));
    else
      pending->send(error_reply(pending->id, wire_error_for(result.error().code()), result.error().message()));
  };
  if (!hooks_.handle) {
    reply(Error(ErrorCode::kUnsupported, "unknown op \"" + request.op + "\""));
    return;
  }
  hooks_.handle(request, std::move(reply));
}

void ControlServer::send(Connection& connection, std::string_view text) {
  {
    std::lock_guard lock(connection.mutex);
    if (connection.closed) return;
    connection.out += text;
  }
  wake_.signal();
}

void ControlServer::publish(const json& event) {
  const std::string line = event_line(event);
  std::lock_guard lock(connections_mutex_);
  for (auto& [fd, connection] : connections_) {
    std::lock_guard connection_lock(connection->mutex);
    if (connection->subscribed && !connection->closed) connection->out += line;
  }
  wake_.signal();
}

void ControlServer::update_interest(Connection& connection) {
  const bool reading = !connection.busy && !connection.eof && !connection.closing;
  const uint32_t interest = (reading ? EPOLLIN : 0u) | (connection.out.empty() ? 0u : EPOLLOUT);
  if (interest == connection.interest) return;
  epoll_event ev{};
  ev.events = interest;
  ev.data.fd = connection.fd.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, connection.fd.get(), &ev) == 0) connection.interest = interest;
}

void ControlServer::flush(const std::shared_ptr<Connection>& connection) {
  bool close = false;
  {
    std::lock_guard lock(connection->mutex);
    if (connection->closed) return;
    while (!connection->out.empty()) {
      const ssize_t n =
          ::send(connection->fd.get(), connection->out.data(), connection->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        close = true;
        break;
      }
      connection->out.erase(0, static_cast<size_t>(n));
    }
    if (!close) {
      if (connection->out.empty() && connection->closing && !connection->busy) close = true;
      update_interest(*connection);
    }
  }
  if (close) close_connection(connection);
}

void ControlServer::close_connection(const std::shared_ptr<Connection>& connection) {
  uint64_t console_id = 0;
  {
    std::lock_guard lock(connection->mutex);
    if (connection->closed) return;
    connection->closed = true;
    console_id = connection->console_id;
    if (connection->console_dropped)
      HV_LOG_INFO("control socket: a console reader that did not keep up lost {} bytes of output",
                  connection->console_dropped);
  }
  if (console_id && hooks_.detach_console) hooks_.detach_console(console_id);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection->fd.get(), nullptr);
  std::lock_guard lock(connections_mutex_);
  connections_.erase(connection->fd.get());
  // The fd closes with the last holder (a reply in flight may hold it).
}

void ControlServer::stop(const json& last_event) {
  if (stopped_) return;
  stopped_ = true;
  if (!last_event.is_null()) publish(last_event);
  stopping_ = true;
  wake_.signal();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
  listener_.reset();
  // What is queued (the reply to quit, the last event) gets a second to go.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard lock(connections_mutex_);
    for (auto& [fd, connection] : connections_) all.push_back(connection);
  }
  for (auto& connection : all) {
    for (;;) {
      {
        std::lock_guard lock(connection->mutex);
        if (connection->out.empty() || connection->closed) break;
      }
      flush(connection);
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{connection->fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    }
    close_connection(connection);
  }
}

}  // namespace hostvisor::control
