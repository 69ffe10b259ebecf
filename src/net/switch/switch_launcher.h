// A VM's way onto network NAME: connect to its switch, starting one first
// if none runs. Starting is serialized by an flock on NAME.lock, held from
// the connection attempt until the new switch accepts, so two VMs starting
// at once never start two switches; the switch takes the same lock before
// it decides to exit (switch_server.h). The switch is `hostvisor switch
// NAME [--dhcp CIDR] --lock-held`, detached: its own session, stdin from
// /dev/null, stdout and stderr to NAME.log beside the socket.
#pragma once

#include <optional>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

struct SwitchLaunch {
  std::string name;
  std::optional<Ipv4Network> dhcp;  // for a switch this call starts
  // The hostvisor executable to start the switch with ("": this process's own).
  std::string program;
  // Starts a host-only network's server on this subnet instead of a switch
  // (`--hostonly CIDR`, net/host_only/host_only_server.h).
  std::optional<Ipv4Network> host_only;
  // With host_only: the rootless form, a switch with a host gateway
  // (`--hostonly CIDR --rootless`).
  bool rootless = false;
  // A thread of this process reaps the switch this call starts when it
  // ends. false: no thread is started (--jail starts switches while the
  // process must still have one thread); an ended switch is then a zombie
  // until this process ends.
  bool reap = true;
};

// A connected, non-blocking stream socket to the switch.
Result<UniqueFd> connect_to_switch(const SwitchLaunch& launch);

}  // namespace hostvisor::net
