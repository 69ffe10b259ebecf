#include "agent/qga/qga_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "agent/qga/base64.h"
#include "agent/qga/qga_replies.h"
#include "base/log.h"

namespace hostvisor::agent::qga {

using nlohmann::json;

namespace {

Error unsupported(const std::string& what) {
  return Error(ErrorCode::kUnsupported, "not supported by qemu-guest-agent: " + what);
}

json command(const char* name, json arguments = json()) {
  json request = {{"execute", name}};
  if (!arguments.is_null()) request["arguments"] = std::move(arguments);
  return request;
}

// One request line. A path or argument that is not UTF-8 cannot be said in
// JSON: its bad bytes become U+FFFD rather than an exception.
std::string line(const json& request) {
  return request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// What a running command may be told through qemu-ga: nothing.
class NoExecControl : public ExecControl {
 public:
  Result<void> resize(uint16_t, uint16_t) override { return unsupported("resizing a command's terminal (it has none)"); }
  Result<void> signal(int) override { return unsupported("signalling a running command"); }
};

}  // namespace

AgentConnector qga_connector(std::string path) {
  return [path]() -> Result<UniqueFd> {
    auto fd = connect_unix(path);
    if (!fd)
      return Error(fd.error().code(), fd.error().message() +
                                          " (is the VM running with --qga " + path + ", and no other client on it?)");
    return fd;
  };
}

QgaClient::QgaClient(AgentConnector connector, std::chrono::milliseconds timeout)
    : connector_(std::move(connector)), timeout_(timeout) {
  // Sync ids differ between runs, so a late answer to an earlier client's
  // sync is never taken for ours.
  next_sync_id_ = static_cast<int64_t>(std::random_device{}() & 0x3fffffff) + 1;
}

void QgaClient::drop() {
  fd_ = UniqueFd();
  synced_ = false;
  unread_.clear();
}

Result<void> QgaClient::ready() {
  if (!fd_.valid()) {
    fd_ = HV_TRY(connector_());
    synced_ = false;
  }
  if (!synced_) {
    auto synced = sync();
    if (!synced) {
      drop();
      return synced;
    }
  }
  return ok();
}

Result<void> QgaClient::send(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::from_errno("qemu-guest-agent: send");
    done += static_cast<size_t>(n);
  }
  return ok();
}

Result<json> QgaClient::next_reply(Clock::time_point deadline) {
  std::vector<uint8_t> buffer(64 * 1024);
  while (true) {
    if (!unread_.empty()) {
      size_t used = 0;
      auto reply = reader_.feed(unread_, used);
      unread_.erase(unread_.begin(), unread_.begin() + static_cast<ptrdiff_t>(used));
      if (!reply) return std::move(reply).error();
      if (*reply) return std::move(**reply);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Error(ErrorCode::kIo, "qemu-guest-agent did not answer within " + std::to_string(timeout_.count()) +
                                       " ms (is it running in the guest?)");
    pollfd p{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) return Error::from_errno("qemu-guest-agent: poll");
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("qemu-guest-agent: receive");
    if (n == 0) return Error(ErrorCode::kIo, "qemu-guest-agent: the connection closed");
    unread_.insert(unread_.end(), buffer.begin(), buffer.begin() + n);
  }
}

Result<void> QgaClient::sync() {
  const int64_t id = next_sync_id_++;
  reader_.set_max_reply(kMaxReply);
  reader_.expect_sentinel();
  unread_.clear();
  // The leading 0xFF is not JSON: qemu-ga drops whatever half request it held.
  HV_TRY(send("\xff" + line(command("guest-sync-delimited", {{"id", id}}))));
  const auto deadline = Clock::now() + timeout_;
  while (true) {
    auto reply = next_reply(deadline);
    if (!reply) return std::move(reply).error();
    if (is_sync_reply(*reply, id)) break;
    // Someone else's reply (a stale one): skip.
  }
  synced_ = true;
  return ok();
}

Result<json> QgaClient::call(const json& request, size_t max_reply) {
  HV_TRY(ready());
  reader_.set_max_reply(max_reply);
  auto answer = [&]() -> Result<json> {
    HV_TRY(send(line(request)));
    return next_reply(Clock::now() + timeout_);
  }();
  reader_.set_max_reply(kMaxReply);
  if (!answer) {
    drop();
    return std::move(answer).error();
  }
  // An agent-side error ("error": ...) leaves the conversation in step.
  return reply_return(*answer);
}

Result<void> QgaClient::ping() {
  HV_TRY(call(command("guest-ping")));
  return ok();
}

Result<AgentInfo> QgaClient::info() {
  AgentInfo info;
  const json version = HV_TRY(call(command("guest-info")));
  info.agent = "qemu-guest-agent " + HV_TRY(decode_version({{"return", version}}));
  HV_TRY(decode_osinfo({{"return", HV_TRY(call(command("guest-get-osinfo")))}}, info));
  // The rest is optional: a guest may have disabled a command (qemu-ga -b).
  if (auto host = call(command("guest-get-host-name")))
    info.hostname = HV_TRY(decode_host_name({{"return", *host}}));
  if (auto nics = call(command("guest-network-get-interfaces")))
    info.interfaces = HV_TRY(decode_interfaces({{"return", *nics}}));
  if (auto filesystems = call(command("guest-get-fsinfo")))
    info.filesystems = HV_TRY(decode_filesystems({{"return", *filesystems}}));
  // qemu-ga reports neither uptime nor memory totals: they stay 0.
  return info;
}

Result<ExecResult> QgaClient::exec(const ExecRequest& request, ExecStreams& streams) {
  if (request.terminal) return unsupported("a terminal (qemu-ga runs commands on pipes; use hostvisor-agent for exec -t)");
  if (!request.cwd.empty()) return unsupported("a working directory for exec");
  if (request.argv.empty()) return Error(ErrorCode::kInvalidArgument, "exec: no command");
  json arguments = {{"path", request.argv[0]},
                    {"arg", std::vector<std::string>(request.argv.begin() + 1, request.argv.end())},
                    {"capture-output", true}};
  if (!request.env.empty()) arguments["env"] = request.env;
  // qemu-ga takes a command's input whole, with the request. A terminal is
  // a person typing, which it cannot forward: the command gets none.
  if (streams.stdin_fd >= 0 && !::isatty(streams.stdin_fd)) {
    std::vector<uint8_t> input;
    uint8_t chunk[16384];
    while (true) {
      const ssize_t n = ::read(streams.stdin_fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno("exec: read stdin");
      if (n == 0) break;
      if (input.size() + static_cast<size_t>(n) > kMaxExecInput)
        return unsupported("more than " + std::to_string(kMaxExecInput >> 20) +
                           " MiB of input for exec (it takes the input whole, it cannot stream it)");
      input.insert(input.end(), chunk, chunk + n);
    }
    if (!input.empty()) arguments["input-data"] = base64_encode(input);
  }
  const int64_t pid = HV_TRY(decode_exec_pid({{"return", HV_TRY(call(command("guest-exec", arguments)))}}));
  NoExecControl control;
  auto pause = std::chrono::milliseconds(5);
  while (true) {
    const json status_reply = HV_TRY(call(command("guest-exec-status", {{"pid", pid}}), kMaxExecStatusReply));
    ExecStatus status = HV_TRY(decode_exec_status({{"return", status_reply}}));
    if (status.exited) {
      if (status.truncated) HV_LOG_WARN("qemu-guest-agent kept only the first 16 MiB of the command's output");
      if (streams.on_stdout && !status.out.empty()) streams.on_stdout(status.out);
      if (streams.on_stderr && !status.err.empty()) streams.on_stderr(status.err);
      ExecResult result;
      result.exit_code = status.exit_code;
      result.signal = status.signal;
      return result;
    }
    // Wait for the next poll, serving the caller's events (Ctrl-C...), which
    // qemu-ga cannot pass on: the control answers that it is unsupported.
    pollfd p{streams.event_fd, POLLIN, 0};
    if (streams.event_fd >= 0 && ::poll(&p, 1, static_cast<int>(pause.count())) == 1) {
      if (streams.on_event) streams.on_event(control);
    } else if (streams.event_fd < 0) {
      std::this_thread::sleep_for(pause);
    }
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

Result<void> QgaClient::write_file(const std::string& guest_path, int source_fd, const FileAttributes& attributes) {
  const int64_t handle =
      HV_TRY(decode_file_handle({{"return", HV_TRY(call(command("guest-file-open", {{"path", guest_path}, {"mode", "w"}})))}}));
  auto copy = [&]() -> Result<void> {
    std::vector<uint8_t> chunk(kFileChunk);
    while (true) {
      const ssize_t n = ::read(source_fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno("read the file to copy");
      if (n == 0) return ok();
      std::span<const uint8_t> rest(chunk.data(), static_cast<size_t>(n));
      while (!rest.empty()) {
        const json reply =
            HV_TRY(call(command("guest-file-write", {{"handle", handle}, {"buf-b64", base64_encode(rest)}})));
        const uint64_t written = HV_TRY(decode_file_write({{"return", reply}}, rest.size()));
        if (written == 0) return Error(ErrorCode::kIo, "qemu-guest-agent wrote nothing to " + guest_path);
        rest = rest.subspan(written);
      }
    }
  };
  auto copied = copy();
  auto closed = call(command("guest-file-close", {{"handle", handle}}));
  HV_TRY(std::move(copied));
  HV_TRY(std::move(closed));
  HV_LOG_WARN("qemu-guest-agent cannot set a file's mode or mtime: {} keeps the guest's defaults, not {:o}", guest_path,
              attributes.mode);
  return ok();
}

Result<FileAttributes> QgaClient::read_file(const std::string& guest_path, int dest_fd) {
  const int64_t handle =
      HV_TRY(decode_file_handle({{"return", HV_TRY(call(command("guest-file-open", {{"path", guest_path}, {"mode", "r"}})))}}));
  FileAttributes attributes;
  auto copy = [&]() -> Result<void> {
    while (true) {
      const json reply = HV_TRY(call(command("guest-file-read", {{"handle", handle}, {"count", kFileChunk}})));
      const FileChunk chunk = HV_TRY(decode_file_read({{"return", reply}}, kFileChunk));
      for (size_t done = 0; done < chunk.data.size();) {
        const ssize_t n = ::write(dest_fd, chunk.data.data() + done, chunk.data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Error::from_errno("write the copy");
        done += static_cast<size_t>(n);
      }
      attributes.size += chunk.data.size();
      if (chunk.eof || chunk.data.empty()) return ok();
    }
  };
  auto copied = copy();
  auto closed = call(command("guest-file-close", {{"handle", handle}}));
  HV_TRY(std::move(copied));
  HV_TRY(std::move(closed));
  // qemu-ga has no stat: the copy gets ordinary attributes, and the user is told.
  attributes.mode = 0644;
  attributes.mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  HV_LOG_WARN("qemu-guest-agent cannot tell a file's mode or mtime: the copy of {} gets 0644 and the current time",
              guest_path);
  return attributes;
}

Result<void> QgaClient::set_time(int64_t unix_time_ns) {
  HV_TRY(call(command("guest-set-time", {{"time", unix_time_ns}})));
  return ok();
}

Result<void> QgaClient::power(const char* mode) {
  HV_TRY(ready());
  // guest-shutdown answers only when it fails; success is the guest going away.
  HV_TRY(send(line(command("guest-shutdown", {{"mode", mode}}))));
  auto reply = next_reply(Clock::now() + std::chrono::seconds(2));
  drop();
  if (reply) HV_TRY(reply_return(*reply));
  return ok();
}

Result<void> QgaClient::shutdown() { return power("powerdown"); }
Result<void> QgaClient::reboot() { return power("reboot"); }

Result<void> QgaClient::reseed_rng(std::span<const uint8_t>) {
  return unsupported("reseeding the guest's RNG (it has no such command; use hostvisor-agent)");
}

}  // namespace hostvisor::agent::qga
