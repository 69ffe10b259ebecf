// The sandbox of a `hostvisor run` process: which files and capabilities
// the VM keeps once it is confined (src/sandbox/jail enforces them). Built
// from the machine's configuration and the run's own paths (sockets, logs,
// where snapshots may go).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/jail/sandbox.h"
#include "vmm/machine_config.h"

namespace hostvisor::cli {

struct VmSandboxPaths {
  std::string control;      // --control socket
  std::string console_log;  // --console-log file
  std::string restore;      // --restore snapshot directory
  // Directories beneath which snapshots may be written (snapshot_roots()).
  std::vector<std::string> snapshot_roots;
  // --sandbox-bind PORT: host TCP ports a forward added later over the
  // control socket (hostfwd-add) may listen on, beside --net's hostfwd=.
  std::vector<uint16_t> extra_bind_ports;
  // --sandbox-bind any: a forward added later may listen on any port (the
  // daemon's API adds forwards to running VMs). Only a VM with a user-mode
  // NIC gets it: no other NIC takes hostfwd-add.
  bool bind_any_port = false;
};

// The directories beneath which a run may write snapshots (absolute):
// those of --snapshot-dir (the writer makes its temporary directory beside
// the target) and of the --control socket (the VM's own directory, where a
// client suspends it), and each --sandbox-write.
std::vector<std::string> snapshot_roots(const std::string& snapshot_dir, const std::string& control,
                                        const std::vector<std::string>& write_dirs);

// Ok if a snapshot at `dir` (absolute) is beneath one of `roots`; else an
// error saying how to allow it.
Result<void> check_snapshot_target(const std::string& dir, const std::vector<std::string>& roots);

// Whether a NIC of `config` needs the host's network namespace: user-mode
// NAT connects out through the host's sockets; taps, bridges and host-only
// networks are host interfaces. (An internal network is a unix socket.)
bool needs_host_network(const MachineConfig& config);

// The TCP a VM process running `config` does itself (unset: not
// restricted). It binds the host ports of its user-mode NICs' TCP
// forwards (and `extra_bind_ports`, or any port with `bind_any` and a
// user-mode NIC), and connects out to any port only for
// a user-mode NIC that is not restrict=on (slirp connects for the guest).
// A host-only network is left unrestricted: its first VM starts the
// network's gateway, which inherits the sandbox and binds every VM's
// forwards and connects to the host for them.
std::optional<sandbox::TcpRules> vm_tcp_rules(const MachineConfig& config, const std::vector<uint16_t>& extra_bind_ports,
                                              bool bind_any = false);

// The rules and kept capabilities of a VM process running `config`.
Result<sandbox::SandboxPolicy> vm_sandbox_policy(const MachineConfig& config, const VmSandboxPaths& paths);

}  // namespace hostvisor::cli
