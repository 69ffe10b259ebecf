#include "control/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hostvisor::control {

Result<ControlClient> ControlClient::connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return Error(ErrorCode::kInvalidArgument, "control socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::from_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      return Error(ErrorCode::kNotFound, "no VM serves the control socket " + path + " (" + std::strerror(err) + ")");
    return Error::from_errno("cannot connect to the control socket " + path, err);
  }
  return ControlClient(std::move(fd));
}

Result<void> ControlClient::send_request(const std::string& op, json args) {
  if (!fd_.valid()) return Error(ErrorCode::kInvalidArgument, "this control connection was given to a console");
  if (!args.is_object()) return Error(ErrorCode::kInvalidArgument, "control request arguments must be an object");
  args["id"] = next_id_;
  args["op"] = op;
  const std::string line = args.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (line.size() > kMaxLineBytes)
    return Error(ErrorCode::kInvalidArgument, "control request " + op + " is longer than 64 KiB");
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("control socket: sending " + op);
    sent += static_cast<size_t>(n);
  }
  return ok();
}

Result<std::optional<json>> ControlClient::read_message(std::chrono::milliseconds timeout, bool byte_wise) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  for (;;) {
    switch (lines_.next(line)) {
      case LineSplitter::Status::kLine: {
        json message = json::parse(line, nullptr, false);
        if (message.is_discarded() || !message.is_object())
          return Error(ErrorCode::kCorrupt, "control socket: the VM sent a line that is not a JSON object");
        return std::optional<json>(std::move(message));
      }
      case LineSplitter::Status::kTooLong:
        return Error(ErrorCode::kCorrupt, "control socket: the VM sent a line longer than 64 KiB");
      case LineSplitter::Status::kNeedMore: break;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::optional<json>();
    pollfd p{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Error::from_errno("control socket: poll");
    if (ready == 0) return std::optional<json>();
    char buffer[4096];
    const ssize_t n = ::read(fd_.get(), buffer, byte_wise ? 1 : sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Error::from_errno("control socket: read");
    if (n == 0) return Error(ErrorCode::kIo, "control socket: the VM closed the connection (it has exited?)");
    lines_.feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

Result<json> ControlClient::wait_reply(uint64_t id, bool byte_wise) {
  const auto deadline = std::chrono::steady_clock::now() + reply_timeout_;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto message = HV_TRY(read_message(std::max(left, std::chrono::milliseconds(0)), byte_wise));
    if (!message) return Error(ErrorCode::kIo, "control socket: no reply from the VM in time");
    if (message->contains("event") && !message->contains("ok")) {
      events_.push_back(std::move(*message));
      continue;
    }
    const json& got_id = (*message)["id"];
    if (!got_id.is_number_unsigned() || got_id.get<uint64_t>() != id) {
      // A reply with a null id answers a line the server could not read: ours.
      if (!got_id.is_null()) return Error(ErrorCode::kCorrupt, "control socket: a reply to another request");
    }
    const json& ok = (*message)["ok"];
    if (!ok.is_boolean()) return Error(ErrorCode::kCorrupt, "control socket: a reply without \"ok\"");
    if (ok.get<bool>()) {
      json result = message->value("result", json::object());
      return result.is_object() ? result : json::object();
    }
    const json& error = (*message)["error"];
    std::string code_name = "failed", text = "the VM refused the request without saying why";
    if (error.is_object()) {
      if (error.contains("code") && error["code"].is_string()) code_name = error["code"].get<std::string>();
      if (error.contains("message") && error["message"].is_string()) text = error["message"].get<std::string>();
    }
    return Error(error_code_for(parse_wire_error(code_name).value_or(WireError::kFailed)), text);
  }
}

Result<json> ControlClient::call(const std::string& op, json args) {
  const uint64_t id = next_id_;
  HV_TRY(send_request(op, std::move(args)));
  ++next_id_;
  return wait_reply(id);
}

Result<void> ControlClient::subscribe() {
  HV_TRY(call("subscribe"));
  return ok();
}

Result<std::optional<json>> ControlClient::next_event(std::chrono::milliseconds timeout) {
  if (!events_.empty()) {
    json event = std::move(events_.front());
    events_.pop_front();
    return std::optional<json>(std::move(event));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto message = HV_TRY(read_message(std::max(left, std::chrono::milliseconds(0))));
    if (!message) return std::optional<json>();
    if (message->contains("event")) return message;
    // A stray reply (none is outstanding): not an event; skip it.
  }
}

Result<UniqueFd> ControlClient::attach_console(bool replay) {
  if (!lines_.take_rest().empty())
    return Error(ErrorCode::kInvalidArgument,
                 "attach the console on a connection of its own (this one has events waiting)");
  const uint64_t id = next_id_;
  HV_TRY(send_request("console", json{{"replay", replay}}));
  ++next_id_;
  // Byte by byte: the console's bytes follow the reply at once and must stay
  // in the socket for the caller.
  HV_TRY(wait_reply(id, /*byte_wise=*/true));
  return std::move(fd_);
}

Result<json> control_call(const std::string& path, const std::string& op, json args) {
  ControlClient client = HV_TRY(ControlClient::connect(path));
  return client.call(op, std::move(args));
}

}  // namespace hostvisor::control
