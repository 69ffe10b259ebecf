// A blocking client of one VM's control socket (docs/vm-control-protocol.md):
// the daemon drives each `hostvisor run --control PATH` process through it.
// One ControlClient is one connection; it is not thread-safe (use one per
// thread, or a lock).
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "control/control_protocol.h"

namespace hostvisor::control {

class ControlClient {
 public:
  // Connects to the VM's socket. Fails with kNotFound when nothing listens
  // there (no such file, or the VM process is gone: ECONNREFUSED).
  static Result<ControlClient> connect(const std::string& path);

  // Sends {"id": N, "op": op, ...args} and waits for its reply: the result
  // object, or an Error whose code maps the wire code (invalid-argument →
  // kInvalidArgument, not-supported → kUnsupported, busy → kBusy, failed →
  // kIo) and whose message is the server's. Events that arrive meanwhile
  // (after subscribe) are kept for next_event(). A connection that breaks,
  // or no reply within the reply timeout, is a kIo error, and the client
  // should then be dropped.
  Result<json> call(const std::string& op, json args = json::object());

  // subscribe, then next_event() gives each event line in order; nullopt
  // when none arrived within `timeout`.
  Result<void> subscribe();
  Result<std::optional<json>> next_event(std::chrono::milliseconds timeout);

  // Sends the console op; after its ok reply, the returned fd is the raw
  // console stream (read: the guest's output, with the replay first if asked
  // for; write: the guest's input). The client is spent: it has given its
  // connection away.
  Result<UniqueFd> attach_console(bool replay);

  // How long call() waits for a reply (default 10 minutes: a snapshot of a
  // large VM takes a while).
  void set_reply_timeout(std::chrono::milliseconds timeout) { reply_timeout_ = timeout; }
  int fd() const { return fd_.get(); }

 private:
  explicit ControlClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<void> send_request(const std::string& op, json args);
  // The next line from the socket; nullopt on timeout. byte_wise reads one
  // byte at a time, so nothing after the line is taken from the socket.
  Result<std::optional<json>> read_message(std::chrono::milliseconds timeout, bool byte_wise = false);
  Result<json> wait_reply(uint64_t id, bool byte_wise = false);

  UniqueFd fd_;
  LineSplitter lines_;
  std::deque<json> events_;
  uint64_t next_id_ = 1;
  std::chrono::milliseconds reply_timeout_{std::chrono::minutes(10)};
};

// One request on a fresh connection.
Result<json> control_call(const std::string& path, const std::string& op, json args = json::object());

}  // namespace hostvisor::control
