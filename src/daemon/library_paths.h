// Where the daemon keeps things.
//
// The library (persistent): $XDG_DATA_HOME/hostvisor (else ~/.local/share/hostvisor)
//   vms/NAME/config.json      what the VM is (VmConfig)
//   vms/NAME/state.json       the process running it, if any, and what the next start resumes
//   vms/NAME/disks/           its disk images
//   vms/NAME/snapshots/SNAP/  snapshots (the format of src/snapshot/)
//   vms/NAME/logs/            hostvisor.log (the VM process's stderr), console.log
//   networks/NAME.json        networks the daemon runs switches for
//   daemon.lock               held by the one daemon of this library
// The runtime (sockets): $XDG_RUNTIME_DIR/hostvisor (else /tmp/hostvisor-$UID,
// the directory `hostvisor run` already uses for net/ and vm/ sockets):
//   api.sock                  the HTTP API
//   vms/NAME/control.sock     each running VM's control socket
//   vms/NAME/vsock.sock       each running VM's vsock device (the agent)
// Both directories are created 0700 and refused if anyone else can enter them.
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::daemon {

struct LibraryPaths {
  std::string data_dir;     // .../hostvisor
  std::string runtime_dir;  // .../hostvisor (runtime)
  std::string api_socket;

  std::string vms_dir() const { return data_dir + "/vms"; }
  std::string vm_dir(const std::string& name) const { return vms_dir() + "/" + name; }
  std::string networks_dir() const { return data_dir + "/networks"; }
  std::string vm_runtime_dir(const std::string& name) const { return runtime_dir + "/vms/" + name; }
};

// The per-user directories from the environment (not created).
Result<LibraryPaths> default_library_paths();

// The default API socket, for a client that looks for the daemon.
Result<std::string> default_api_socket();

// Creates data and runtime directories (0700, checked).
Result<void> create_library_directories(const LibraryPaths& paths);

}  // namespace hostvisor::daemon
