// AgentClient: what the host asks of an agent in the guest, whichever agent
// answers. The hostvisor agent (HostvisorAgentClient, over vsock) does all of
// it; qemu-guest-agent (the qga client, over virtio-serial) does a subset and
// answers the rest with ErrorCode::kUnsupported and a one-line message that
// says which agent cannot do what, so a command can tell the user instead of
// pretending.
//
// The agent is hostile input: implementations bound every reply and check it
// before anything here sees it. Calls are synchronous and not thread-safe; one
// client serves one caller at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::agent {

// The guest port the hostvisor agent listens on (vsock).
inline constexpr uint32_t kAgentVsockPort = 1024;

struct FilesystemInfo {
  std::string mount_point;
  std::string type;  // "ext4", "tmpfs", ...
  std::string device;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
};

struct InterfaceInfo {
  std::string name;
  std::string mac;                     // empty when the agent does not say
  std::vector<std::string> addresses;  // "10.0.2.15/24", "fe80::1/64"
};

struct AgentInfo {
  std::string agent;          // "hostvisor-agent 1", "qemu-guest-agent 7.2.0"
  std::string os;             // PRETTY_NAME of /etc/os-release, or "Linux"
  std::string kernel_release; // uname -r
  std::string hostname;
  double uptime_seconds = 0;
  int64_t unix_time_ns = 0;   // the guest's wall clock when it answered (0: unknown)
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  std::vector<FilesystemInfo> filesystems;
  std::vector<InterfaceInfo> interfaces;
};

struct ExecRequest {
  std::vector<std::string> argv;  // argv[0] is looked up in the guest's PATH
  std::vector<std::string> env;   // "NAME=value" added to the agent's environment
  std::string cwd;                // empty: the agent's
  bool terminal = false;          // run on a pty in the guest (stdout and stderr merged)
  uint16_t rows = 0;              // the pty's first size (terminal only; 0: leave it)
  uint16_t cols = 0;
};

// What a running command may be told while it runs. Valid only inside
// ExecStreams::on_event.
class ExecControl {
 public:
  virtual ~ExecControl() = default;
  virtual Result<void> resize(uint16_t rows, uint16_t cols) = 0;  // terminal only
  virtual Result<void> signal(int signo) = 0;                      // Linux signal numbers
};

// Where a command's input comes from and its output goes. The client runs one
// poll loop over the agent's connection, stdin_fd and event_fd.
struct ExecStreams {
  // Read until EOF and forwarded as the command's stdin (then closed in the
  // guest); -1: the command's stdin is at EOF from the start.
  int stdin_fd = -1;
  std::function<void(std::span<const uint8_t>)> on_stdout;
  std::function<void(std::span<const uint8_t>)> on_stderr;  // never called with a terminal
  // When event_fd is readable, on_event is called to drain it and may resize
  // the terminal or send a signal (e.g. a signalfd for SIGWINCH and SIGINT).
  int event_fd = -1;
  std::function<void(ExecControl&)> on_event;
};

struct ExecResult {
  int exit_code = 0;  // valid when signal == 0
  int signal = 0;     // the signal that ended the command, 0 if it exited
  // The status a shell would give: exit_code, or 128 + signal.
  int status() const { return signal != 0 ? 128 + signal : exit_code; }
};

struct FileAttributes {
  uint32_t mode = 0644;  // permission bits (07777)
  int64_t mtime_ns = 0;  // since the epoch
  uint64_t size = 0;     // bytes (read_file's answer; ignored by write_file)
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;

  // "hostvisor-agent" or "qemu-guest-agent", for messages.
  virtual std::string name() const = 0;

  virtual Result<void> ping() = 0;
  virtual Result<AgentInfo> info() = 0;

  // Runs a command to its end. An error means the command could not be run
  // or the agent failed; a command that fails is an ExecResult.
  virtual Result<ExecResult> exec(const ExecRequest& request, ExecStreams& streams) = 0;

  // Copies source_fd (read to EOF) into guest_path, replacing it atomically,
  // with attributes' mode and mtime.
  virtual Result<void> write_file(const std::string& guest_path, int source_fd,
                                  const FileAttributes& attributes) = 0;
  // Copies guest_path into dest_fd; returns its mode, mtime and size.
  virtual Result<FileAttributes> read_file(const std::string& guest_path, int dest_fd) = 0;

  // Sets the guest's wall clock (CLOCK_REALTIME) to unix_time_ns.
  virtual Result<void> set_time(int64_t unix_time_ns) = 0;
  // Asks the guest to power off / reboot; success means the agent accepted.
  virtual Result<void> shutdown() = 0;
  virtual Result<void> reboot() = 0;
  // Mixes host-provided random bytes into the guest kernel's entropy pool
  // (RNDADDENTROPY), e.g. after a clone of a snapshot.
  virtual Result<void> reseed_rng(std::span<const uint8_t> entropy) = 0;
};

// The error an agent returns for an operation it does not have.
inline Error unsupported_by(const std::string& agent, const std::string& operation) {
  return Error(ErrorCode::kUnsupported, agent + " cannot " + operation);
}

}  // namespace hostvisor::agent
