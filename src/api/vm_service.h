// What the API asks of the daemon. The router (router.h) parses and checks
// a request, then calls one of these; the daemon (src/daemon/) implements
// them. Tests and the fuzz target put a recording fake in its place.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_client.h"
#include "api/event_bus.h"
#include "base/fd.h"
#include "base/result.h"
#include "daemon/vm_config.h"

namespace hostvisor::api {

enum class VmAction { kStart, kStop, kKill, kPause, kResume, kReset, kSuspend };

struct ExecCall {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  std::string stdin_data;
  uint32_t timeout_seconds = 60;
};

// An exec whose input and output stream while it runs (the exec WebSocket):
// stdin is read from stdin_fd to EOF, and on_event may resize the terminal
// or signal the command when event_fd is readable.
struct ExecStream {
  ExecCall call;
  bool terminal = false;
  uint16_t rows = 0, cols = 0;
  int stdin_fd = -1;
  int event_fd = -1;
  std::function<void(int channel, std::span<const uint8_t>)> on_output;  // 1: stdout, 2: stderr
  std::function<void(agent::ExecControl&)> on_event;
};

struct PortForward {
  uint32_t nic = 0;
  std::string proto = "tcp";
  std::string host_addr = "127.0.0.1";
  uint16_t host_port = 0;
  std::string guest_addr;
  uint16_t guest_port = 0;
};

class VmService {
 public:
  virtual ~VmService() = default;

  virtual Result<nlohmann::json> list_vms() = 0;
  virtual Result<nlohmann::json> create_vm(const daemon::VmConfig& config) = 0;
  virtual Result<nlohmann::json> get_vm(const std::string& name) = 0;
  virtual Result<nlohmann::json> update_vm(const std::string& name, const nlohmann::json& update) = 0;
  virtual Result<void> delete_vm(const std::string& name, bool force) = 0;
  // stop_timeout_seconds: for kStop, how long the guest gets to power off.
  virtual Result<nlohmann::json> act(const std::string& name, VmAction action, uint32_t stop_timeout_seconds) = 0;

  virtual Result<nlohmann::json> list_snapshots(const std::string& name) = 0;
  virtual Result<nlohmann::json> create_snapshot(const std::string& name, const std::string& snapshot) = 0;
  // verify: the VM process checks the snapshot's memory checksums before
  // the guest runs (`run --restore DIR --verify`), and the restore fails
  // naming the first bad chunk.
  virtual Result<nlohmann::json> restore_snapshot(const std::string& name, const std::string& snapshot,
                                                  bool verify) = 0;
  virtual Result<void> delete_snapshot(const std::string& name, const std::string& snapshot) = 0;
  virtual Result<nlohmann::json> clone_vm(const std::string& name, const std::string& new_name,
                                          const std::optional<std::string>& snapshot) = 0;

  virtual Result<nlohmann::json> exec(const std::string& name, const ExecCall& call) = 0;
  // Runs to the command's end; the result as exec's (without the output).
  virtual Result<nlohmann::json> exec_stream(const std::string& name, ExecStream& stream) = 0;
  virtual Result<std::string> read_file(const std::string& name, const std::string& guest_path) = 0;
  virtual Result<void> write_file(const std::string& name, const std::string& guest_path, const std::string& data,
                                  uint32_t mode) = 0;

  virtual Result<nlohmann::json> add_port_forward(const std::string& name, const PortForward& forward) = 0;
  virtual Result<void> remove_port_forward(const std::string& name, const PortForward& forward) = 0;
  virtual Result<nlohmann::json> set_balloon(const std::string& name, uint64_t bytes) = 0;
  virtual Result<nlohmann::json> balloon(const std::string& name) = 0;
  virtual Result<nlohmann::json> metrics(const std::string& name) = 0;

  virtual Result<nlohmann::json> list_networks() = 0;
  virtual Result<nlohmann::json> create_network(const std::string& name, const std::string& dhcp) = 0;
  virtual Result<void> delete_network(const std::string& name) = 0;

  // The tail (at most 1 MiB) of the VM process's log, or of its console's.
  virtual Result<std::string> read_log(const std::string& name, bool console) = 0;

  virtual EventBus& events() = 0;
  // A connection carrying the VM's console both ways (replay first).
  virtual Result<UniqueFd> attach_console(const std::string& name) = 0;
};

}  // namespace hostvisor::api
