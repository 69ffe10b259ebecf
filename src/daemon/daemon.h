// The VM library daemon: the VmService the API calls, over a library of VM
// directories (library_paths.h) and one `hostvisor run` process per running
// VM. Reads (list, get) take no VM's lock and read files that are only ever
// replaced atomically, so they never wait behind a slow stop or snapshot.
// Every change to the library is atomic: a VM directory is built under a
// temporary name and renamed into place, config.json and state.json are
// replaced by rename, and a delete renames the directory away before
// removing it. What a crash leaves under a temporary name is removed when
// the next daemon starts.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "api/vm_service.h"
#include "base/fd.h"
#include "daemon/library_paths.h"
#include "daemon/vm_process.h"

namespace hostvisor::daemon {

class Daemon final : public api::VmService {
 public:
  // Takes the library's lock (one daemon per library), cleans up what an
  // interrupted operation left, and finds VMs still running.
  // hostvisor_binary runs switches, and VMs unless vm_binary is given (tests
  // put a stand-in for `hostvisor run` there).
  static Result<std::unique_ptr<Daemon>> open(const LibraryPaths& paths, const std::string& hostvisor_binary,
                                              const std::string& vm_binary = "");
  ~Daemon() override;

  Result<nlohmann::json> list_vms() override;
  Result<nlohmann::json> create_vm(const VmConfig& config) override;
  Result<nlohmann::json> get_vm(const std::string& name) override;
  Result<nlohmann::json> update_vm(const std::string& name, const nlohmann::json& update) override;
  Result<void> delete_vm(const std::string& name, bool force) override;
  Result<nlohmann::json> act(const std::string& name, api::VmAction action, uint32_t stop_timeout_seconds) override;

  Result<nlohmann::json> list_snapshots(const std::string& name) override;
  Result<nlohmann::json> create_snapshot(const std::string& name, const std::string& snapshot) override;
  Result<nlohmann::json> restore_snapshot(const std::string& name, const std::string& snapshot, bool verify) override;
  Result<void> delete_snapshot(const std::string& name, const std::string& snapshot) override;
  Result<nlohmann::json> clone_vm(const std::string& name, const std::string& new_name,
                                  const std::optional<std::string>& snapshot) override;

  Result<nlohmann::json> exec(const std::string& name, const api::ExecCall& call) override;
  Result<nlohmann::json> exec_stream(const std::string& name, api::ExecStream& stream) override;
  Result<std::string> read_file(const std::string& name, const std::string& guest_path) override;
  Result<void> write_file(const std::string& name, const std::string& guest_path, const std::string& data,
                          uint32_t mode) override;

  Result<nlohmann::json> add_port_forward(const std::string& name, const api::PortForward& forward) override;
  Result<void> remove_port_forward(const std::string& name, const api::PortForward& forward) override;
  Result<nlohmann::json> set_balloon(const std::string& name, uint64_t bytes) override;
  Result<nlohmann::json> balloon(const std::string& name) override;
  Result<nlohmann::json> metrics(const std::string& name) override;

  Result<nlohmann::json> list_networks() override;
  Result<nlohmann::json> create_network(const std::string& name, const std::string& dhcp) override;
  Result<void> delete_network(const std::string& name) override;

  Result<std::string> read_log(const std::string& name, bool console) override;
  api::EventBus& events() override { return events_; }
  Result<UniqueFd> attach_console(const std::string& name) override;

  const LibraryPaths& paths() const { return paths_; }

 private:
  // state.json: the running process, and what the next start continues.
  struct VmState {
    ProcessIdentity process;      // pid 0: not running
    std::string resume;           // a snapshot directory the next start restores ("": boot)
    bool resume_as_clone = false;  // restore with --clone (new MACs)
    bool suspended = false;        // resume was written by suspend
    std::vector<std::string> disks;  // the images the VM last wrote (overlays after a restore)
  };

  Daemon(LibraryPaths paths, std::string binary, std::string vm_binary, UniqueFd lock);

  Result<VmConfig> load_config(const std::string& name) const;
  Result<VmState> load_state(const std::string& name) const;
  Result<void> save_state(const std::string& name, const VmState& state) const;
  std::string control_socket(const std::string& name) const;
  std::string vsock_socket(const std::string& name) const;
  // The state a client sees: running, paused, stopped or suspended.
  std::string run_state(const std::string& name, const VmState& state);
  nlohmann::json describe(const VmConfig& config, const VmState& state, const std::string& run_state) const;
  // The lock of one VM's changes.
  std::shared_ptr<std::mutex> vm_lock(const std::string& name);
  Result<void> require_exists(const std::string& name) const;
  // The running VM's state, or kBusy "VM NAME is not running".
  Result<VmState> require_running(const std::string& name);

  // verify_restore: a restore checks the snapshot's memory checksums first
  // (`run --restore DIR --verify`); for this start only, not kept in state.
  Result<void> start_locked(const std::string& name, bool verify_restore = false);
  Result<void> stop_locked(const std::string& name, bool force, uint32_t timeout_seconds);
  Result<nlohmann::json> snapshot_locked(const std::string& name, const std::string& dir, bool quit);
  void wait_for_exit(const ProcessIdentity& process, std::chrono::milliseconds timeout);
  // A VM whose process ended: state.json forgets the process.
  void note_stopped(const std::string& name, const std::string& reason);
  void publish_state(const std::string& name, const std::string& state, const std::string& reason = "");
  void monitor();
  void cleanup_interrupted();
  void start_saved_networks();
  // Fails if an image anywhere in the library backs onto a file in `dir`.
  Result<void> check_unreferenced(const std::string& dir) const;

  Result<std::unique_ptr<class AgentAccess>> agent_for(const std::string& name);

  LibraryPaths paths_;
  std::string binary_;
  std::string vm_binary_;
  UniqueFd lock_;
  api::EventBus events_;

  std::mutex locks_mutex_;
  std::map<std::string, std::shared_ptr<std::mutex>> vm_locks_;
  std::mutex paused_mutex_;
  std::set<std::string> paused_;  // running VMs known to be paused
  std::mutex networks_mutex_;

  std::atomic<bool> stopping_{false};
  std::thread monitor_;
};

}  // namespace hostvisor::daemon
