// The VM side of the control protocol (docs/vm-control-protocol.md): a unix
// socket served on a thread of its own. It owns the connections (peer
// credentials, line framing, the 64 KiB limit, one request at a time per
// connection, queued output), answers subscribe and console itself, and
// hands every other request to a handler that replies when it is done, from
// whatever thread it finished on (the VM controller replies from the VMM's
// event loop). It knows nothing of the machine: it outlives each Machine of
// a run (a guest reset rebuilds it; the socket stays).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/result.h"
#include "control/control_protocol.h"

namespace hostvisor::control {

// A request's reply: call it once, from any thread. One never called (its
// last copy destroyed: the VM ended before it ran) answers busy.
using Reply = std::function<void(Result<json>)>;

struct ServerHooks {
  // Every op but subscribe and console.
  std::function<void(const Request&, Reply)> handle;
  // The event a new subscriber gets first (the current state).
  std::function<json()> current_state;
  // Console attachments: `sink` gets the guest's output from now on (after
  // the replay ring, with replay); the id detaches it. Input typed by an
  // attachment goes to console_input. Called on the server's thread.
  std::function<uint64_t(std::function<void(std::span<const uint8_t>)> sink, bool replay)> attach_console;
  std::function<void(uint64_t id)> detach_console;
  std::function<void(std::span<const uint8_t>)> console_input;
};

class ControlServer {
 public:
  static constexpr size_t kMaxConnections = 64;
  // What a console attachment may have queued before its output is dropped.
  static constexpr size_t kMaxConsoleBacklog = 256 * 1024;

  // Creates the socket at `path` (atomically, mode 0600; an old socket file
  // there is replaced) and starts serving.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, ServerHooks hooks);
  // stop() if not done.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Sends an event line to every subscribed connection. Thread-safe.
  void publish(const json& event);
  // Sends `last_event` (if not null) to subscribers, gives every connection
  // up to a second to take what is queued for it (the reply to quit), closes
  // them and removes the socket file.
  void stop(const json& last_event = nullptr);

  const std::string& path() const { return path_; }

 private:
  struct Connection;
  ControlServer(std::string path, UniqueFd listener, EventFd wake, UniqueFd epoll, ServerHooks hooks)
      : path_(std::move(path)),
        listener_(std::move(listener)),
        wake_(std::move(wake)),
        epoll_(std::move(epoll)),
        hooks_(std::move(hooks)) {}
  void run();
  void accept_connections();
  void on_readable(const std::shared_ptr<Connection>& connection);
  // Answers the connection's complete lines while no request is in flight.
  void process_lines(const std::shared_ptr<Connection>& connection);
  void dispatch(const std::shared_ptr<Connection>& connection, Request request);
  // Sends what is queued; closes a connection that is done or broken.
  void flush(const std::shared_ptr<Connection>& connection);
  void close_connection(const std::shared_ptr<Connection>& connection);
  // What epoll watches the connection for: input unless a reply is due or
  // it is closing, output while some is queued. With its lock held.
  void update_interest(Connection& connection);
  // Queues `text` for `connection` and wakes the thread. Thread-safe.
  void send(Connection& connection, std::string_view text);

  std::string path_;
  UniqueFd listener_;
  EventFd wake_;
  UniqueFd epoll_;
  ServerHooks hooks_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  std::mutex connections_mutex_;  // the map; each connection has its own lock
  std::map<int, std::shared_ptr<Connection>> connections_;
  std::thread thread_;
};

}  // namespace hostvisor::control
