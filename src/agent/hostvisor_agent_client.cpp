#include "agent/hostvisor_agent_client.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/fd.h"

namespace hostvisor::agent {
namespace {

using protocol::Frame;
using protocol::FrameChannel;
using protocol::FrameType;
using protocol::Stream;

constexpr size_t kMaxListEntries = 256;
constexpr std::chrono::seconds kTransferIdle{60};

Result<uint64_t> unsigned_field(const nlohmann::json& object, const char* name) {
  const int64_t v = HV_TRY(protocol::optional_int(object, name, 0));
  if (v < 0) return Error(ErrorCode::kCorrupt, std::string("hostvisor-agent: \"") + name + "\" is negative");
  return static_cast<uint64_t>(v);
}

Result<const nlohmann::json*> list_field(const nlohmann::json& object, const char* name) {
  static const nlohmann::json empty = nlohmann::json::array();
  const auto it = object.find(name);
  if (it == object.end()) return &empty;
  if (!it->is_array() || it->size() > kMaxListEntries)
    return Error(ErrorCode::kCorrupt,
                 std::string("hostvisor-agent: \"") + name + "\" is not a list of at most 256 entries");
  return &*it;
}

class ChannelExecControl : public ExecControl {
 public:
  ChannelExecControl(FrameChannel& channel, bool terminal) : channel_(channel), terminal_(terminal) {}
  Result<void> resize(uint16_t rows, uint16_t cols) override {
    if (!terminal_) return Error(ErrorCode::kInvalidArgument, "resize: the command has no terminal");
    channel_.send_json({{"op", "resize"}, {"rows", rows}, {"cols", cols}});
    return ok();
  }
  Result<void> signal(int signo) override {
    if (signo < 1 || signo > 64)
      return Error(ErrorCode::kInvalidArgument, "signal: no signal " + std::to_string(signo));
    channel_.send_json({{"op", "signal"}, {"signal", signo}});
    return ok();
  }

 private:
  FrameChannel& channel_;
  bool terminal_;
};

}  // namespace

HostvisorAgentClient::HostvisorAgentClient(AgentConnector connector, std::chrono::milliseconds timeout)
    : connector_(std::move(connector)), timeout_(timeout) {}

Result<FrameChannel> HostvisorAgentClient::open() {
  UniqueFd fd = HV_TRY(connector_());
  FrameChannel channel(std::move(fd));
  auto hello = channel.receive_json(timeout_);
  if (!hello.ok()) return hello.error().with_context("hostvisor-agent: no hello");
  const std::string agent = HV_TRY(protocol::string_field(*hello, "agent", 64));
  const int64_t version = HV_TRY(protocol::int_field(*hello, "protocol"));
  if (agent != "hostvisor-agent")
    return Error(ErrorCode::kCorrupt, "the peer is \"" + agent + "\", not hostvisor-agent");
  if (version != protocol::kProtocolVersion)
    return Error(ErrorCode::kUnsupported, "hostvisor-agent speaks protocol " + std::to_string(version) +
                                              ", this hostvisor " + std::to_string(protocol::kProtocolVersion) +
                                              ": update the guest's agent");
  return channel;
}

Result<nlohmann::json> HostvisorAgentClient::call_on(FrameChannel& channel, const nlohmann::json& request) {
  channel.send_json(request);
  HV_TRY(channel.flush(timeout_));
  nlohmann::json reply = HV_TRY(channel.receive_json(timeout_));
  HV_TRY(protocol::check_reply(reply));
  return reply;
}

Result<nlohmann::json> HostvisorAgentClient::call(const nlohmann::json& request) {
  FrameChannel channel = HV_TRY(open());
  return call_on(channel, request);
}

Result<void> HostvisorAgentClient::ping() {
  HV_TRY(call({{"op", "ping"}}));
  return ok();
}

Result<AgentInfo> decode_info(const nlohmann::json& reply) {
  AgentInfo info;
  info.agent = HV_TRY(protocol::optional_string(reply, "agent", "", 256));
  info.os = HV_TRY(protocol::optional_string(reply, "os", "", 256));
  info.kernel_release = HV_TRY(protocol::optional_string(reply, "kernel_release", "", 256));
  info.hostname = HV_TRY(protocol::optional_string(reply, "hostname", "", 256));
  if (const auto it = reply.find("uptime_seconds"); it != reply.end()) {
    if (!it->is_number() || it->get<double>() < 0)
      return Error(ErrorCode::kCorrupt, "hostvisor-agent: bad \"uptime_seconds\"");
    info.uptime_seconds = it->get<double>();
  }
  info.unix_time_ns = static_cast<int64_t>(HV_TRY(unsigned_field(reply, "unix_ns")));
  info.memory_total_bytes = HV_TRY(unsigned_field(reply, "memory_total_bytes"));
  info.memory_available_bytes = HV_TRY(unsigned_field(reply, "memory_available_bytes"));
  for (const auto& fs : *HV_TRY(list_field(reply, "filesystems"))) {
    if (!fs.is_object()) return Error(ErrorCode::kCorrupt, "hostvisor-agent: a filesystem is not an object");
    FilesystemInfo f;
    f.mount_point = HV_TRY(protocol::optional_string(fs, "mount_point", "", 4096));
    f.type = HV_TRY(protocol::optional_string(fs, "type", "", 64));
    f.device = HV_TRY(protocol::optional_string(fs, "device", "", 4096));
    f.total_bytes = HV_TRY(unsigned_field(fs, "total_bytes"));
    f.free_bytes = HV_TRY(unsigned_field(fs, "free_bytes"));
    info.filesystems.push_back(std::move(f));
  }
  for (const auto& nic : *HV_TRY(list_field(reply, "interfaces"))) {
    if (!nic.is_object()) return Error(ErrorCode::kCorrupt, "hostvisor-agent: an interface is not an object");
    InterfaceInfo i;
    i.name = HV_TRY(protocol::optional_string(nic, "name", "", 64));
    i.mac = HV_TRY(protocol::optional_string(nic, "mac", "", 64));
    for (const auto& a : *HV_TRY(list_field(nic, "addresses"))) {
      if (!a.is_string() || a.get_ref<const std::string&>().size() > 64)
        return Error(ErrorCode::kCorrupt, "hostvisor-agent: an address is not a short string");
      i.addresses.push_back(a.get<std::string>());
    }
    info.interfaces.push_back(std::move(i));
  }
  return info;
}

Result<AgentInfo> HostvisorAgentClient::info() {
  const nlohmann::json reply = HV_TRY(call({{"op", "info"}}));
  return decode_info(reply);
}

Result<ExecResult> HostvisorAgentClient::exec(const ExecRequest& request, ExecStreams& streams) {
  if (request.argv.empty()) return Error(ErrorCode::kInvalidArgument, "exec: no command");
  FrameChannel channel = HV_TRY(open());
  nlohmann::json message = {
      {"op", "exec"}, {"argv", request.argv}, {"env", request.env}, {"terminal", request.terminal}};
  if (!request.cwd.empty()) message["cwd"] = request.cwd;
  if (request.terminal && request.rows > 0 && request.cols > 0) {
    message["rows"] = request.rows;
    message["cols"] = request.cols;
  }
  HV_TRY(call_on(channel, message));

  ChannelExecControl control(channel, request.terminal);
  bool stdin_open = streams.stdin_fd >= 0;
  bool closed = false;
  if (!stdin_open) channel.send_end(Stream::kStdin);
  for (;;) {
    // Take every whole frame first: the agent may have sent output and the
    // exit in one read.
    for (;;) {
      auto frame = HV_TRY(channel.next_frame());
      if (!frame) break;
      if (frame->type == FrameType::kData) {
        const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(frame->payload.data()),
                                             frame->payload.size());
        if (frame->stream == Stream::kStdout) {
          if (streams.on_stdout && !bytes.empty()) streams.on_stdout(bytes);
        } else if (frame->stream == Stream::kStderr) {
          if (streams.on_stderr && !bytes.empty()) streams.on_stderr(bytes);
        } else {
          return Error(ErrorCode::kCorrupt, "hostvisor-agent: data on the stdin stream toward the host");
        }
        continue;
      }
      const nlohmann::json event = HV_TRY(protocol::parse_object(frame->payload));
      const std::string name = HV_TRY(protocol::string_field(event, "event", 64));
      if (name != "exit")
        return Error(ErrorCode::kCorrupt, "hostvisor-agent: unexpected event \"" + name + "\" during exec");
      ExecResult result;
      const int64_t code = HV_TRY(protocol::optional_int(event, "exit_code", 0));
      const int64_t signo = HV_TRY(protocol::optional_int(event, "signal", 0));
      if (code < 0 || code > 255 || signo < 0 || signo > 64)
        return Error(ErrorCode::kCorrupt, "hostvisor-agent: exit status out of range");
      result.exit_code = static_cast<int>(code);
      result.signal = static_cast<int>(signo);
      return result;
    }
    if (closed) return Error(ErrorCode::kIo, "hostvisor-agent closed the connection before the command ended");
    const bool room = channel.out_pending() < FrameChannel::kOutHighWater;
    pollfd p[3] = {{channel.fd(), static_cast<short>(POLLIN | (channel.out_pending() > 0 ? POLLOUT : 0)), 0},
                   {stdin_open && room ? streams.stdin_fd : -1, POLLIN, 0},
                   {streams.event_fd, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("exec: poll");
    }
    if (p[0].revents & POLLOUT) HV_TRY(channel.write_some());
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      // At EOF the frames already buffered (perhaps the exit) are taken
      // first; only then is a missing exit an error.
      closed = !HV_TRY(channel.read_some());
    }
    if (p[1].revents) {
      uint8_t buf[32 * 1024];
      const ssize_t n = ::read(streams.stdin_fd, buf, sizeof(buf));
      if (n > 0) {
        channel.send_data(Stream::kStdin, std::span<const uint8_t>(buf, static_cast<size_t>(n)));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = false;
        channel.send_end(Stream::kStdin);
      }
    }
    if (p[2].revents && streams.on_event) streams.on_event(control);
    HV_TRY(channel.write_some());
  }
}

Result<void> HostvisorAgentClient::write_file(const std::string& guest_path, int source_fd,
                                              const FileAttributes& attributes) {
  struct stat st {};
  if (::fstat(source_fd, &st) != 0) return Error::from_errno("write_file: fstat");
  if (!S_ISREG(st.st_mode)) return Error(ErrorCode::kInvalidArgument, "write_file: the source is not a regular file");
  const int64_t size = st.st_size;
  FrameChannel channel = HV_TRY(open());
  HV_TRY(call_on(channel, {{"op", "write_file"},
                           {"path", guest_path},
                           {"size", size},
                           {"mode", attributes.mode & 07777},
                           {"mtime_ns", attributes.mtime_ns}}));
  std::vector<uint8_t> buf(protocol::kMaxDataBytes);
  int64_t sent = 0;
  auto stream = [&]() -> Result<void> {
    while (sent < size) {
      const ssize_t n = ::read(source_fd, buf.data(), static_cast<size_t>(std::min<int64_t>(buf.size(), size - sent)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::from_errno("write_file: read");
      if (n == 0) return Error(ErrorCode::kIo, "write_file: the source shrank while it was copied");
      channel.send_data(Stream::kStdin, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
      sent += n;
      if (channel.out_pending() >= FrameChannel::kOutHighWater) HV_TRY(channel.flush(kTransferIdle));
    }
    channel.send_end(Stream::kStdin);
    return channel.flush(kTransferIdle);
  };
  auto streamed = stream();
  // The agent's answer says why when it stopped taking data (a full disk).
  auto reply = channel.receive_json(kTransferIdle);
  if (reply.ok()) HV_TRY(protocol::check_reply(*reply));
  if (!streamed.ok()) return streamed;
  if (!reply.ok()) return reply.error();
  return ok();
}

Result<FileAttributes> HostvisorAgentClient::read_file(const std::string& guest_path, int dest_fd) {
  FrameChannel channel = HV_TRY(open());
  const nlohmann::json header = HV_TRY(call_on(channel, {{"op", "read_file"}, {"path", guest_path}}));
  FileAttributes attributes;
  const int64_t mode = HV_TRY(protocol::int_field(header, "mode"));
  const int64_t size = HV_TRY(protocol::int_field(header, "size"));
  attributes.mtime_ns = HV_TRY(protocol::int_field(header, "mtime_ns"));
  if (mode < 0 || mode > 07777 || size < 0)
    return Error(ErrorCode::kCorrupt, "hostvisor-agent: read_file: mode or size out of range");
  attributes.mode = static_cast<uint32_t>(mode);
  attributes.size = static_cast<uint64_t>(size);
  int64_t received = 0;
  for (;;) {
    Frame frame = HV_TRY(channel.receive(kTransferIdle));
    if (frame.type != FrameType::kData || frame.stream != Stream::kStdout)
      return Error(ErrorCode::kCorrupt, "hostvisor-agent: read_file: expected the file's data");
    if (frame.payload.empty()) break;
    if (static_cast<int64_t>(frame.payload.size()) > size - received)
      return Error(ErrorCode::kCorrupt,
                   "hostvisor-agent: read_file: more data than the " + std::to_string(size) + " bytes announced");
    HV_TRY(write_fully(dest_fd, frame.payload));
    received += static_cast<int64_t>(frame.payload.size());
  }
  HV_TRY(protocol::check_reply(HV_TRY(channel.receive_json(kTransferIdle))));
  if (received != size)
    return Error(ErrorCode::kCorrupt, "hostvisor-agent: read_file: got " + std::to_string(received) + " of " +
                                          std::to_string(size) + " bytes");
  return attributes;
}

Result<void> HostvisorAgentClient::set_time(int64_t unix_time_ns) {
  const nlohmann::json reply = HV_TRY(call({{"op", "set_time"}, {"unix_ns", unix_time_ns}}));
  last_clock_offset_ns_ = HV_TRY(protocol::optional_int(reply, "offset_ns", 0));
  return ok();
}

Result<void> HostvisorAgentClient::shutdown() {
  HV_TRY(call({{"op", "shutdown"}}));
  return ok();
}

Result<void> HostvisorAgentClient::reboot() {
  HV_TRY(call({{"op", "reboot"}}));
  return ok();
}

Result<void> HostvisorAgentClient::reseed_rng(std::span<const uint8_t> entropy) {
  if (entropy.empty() || entropy.size() > 4096)
    return Error(ErrorCode::kInvalidArgument, "reseed_rng: 1 to 4096 bytes of entropy");
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (uint8_t b : entropy) {
    hex.push_back(digits[b >> 4]);
    hex.push_back(digits[b & 15]);
  }
  HV_TRY(call({{"op", "reseed_rng"}, {"entropy", hex}}));
  return ok();
}

}  // namespace hostvisor::agent
