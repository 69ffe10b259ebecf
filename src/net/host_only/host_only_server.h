// The process behind a privileged host-only network NAME (`hostvisor
// switch hostonly-NAME --hostonly CIDR`, started by the first VM as the
// internal networks' switch is, switch_launcher.h): it owns the host's side.
//
// At start it makes the bridge hv-NAME, gives it the host's address (host 1
// of CIDR), turns IPv4 forwarding off for it and adds routing rules that
// route nothing from it or to its network (so nothing a VM sends is routed
// beyond the host, even after the host turns ip_forward on:
// net/host_interface/routing_rules.h) and IPv6 off, and puts a tap of its
// own in it, on which a
// DHCP server (host 2, no router, no DNS) answers the VMs. Each VM puts its
// own tap in the bridge and keeps a connection to this process's socket for
// as long as it runs; it sends nothing on it. When the last one has gone
// (or none came within idle_grace), the process takes the start lock,
// removes the rules and the bridge and exits, so the host is as it was. Needs
// CAP_NET_ADMIN, which it inherits from the VM that started it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

struct HostOnlyServerOptions {
  std::string bridge;  // hv-NAME
  Ipv4Network network;
  std::string socket_path;
  std::string lock_path;  // "": no lock
  std::chrono::milliseconds idle_grace{std::chrono::seconds(30)};
  std::string log_path{};  // removed with the lock file when it ends ("": none)
};

class HostOnlyServer {
 public:
  // Makes the bridge (replacing a stale one a crashed server left), its
  // address and the DHCP tap, and listens.
  static Result<std::unique_ptr<HostOnlyServer>> create(const HostOnlyServerOptions& options);
  ~HostOnlyServer();  // removes the bridge

  // Serves until the last VM leaves.
  Result<void> run();

 private:
  class Impl;
  explicit HostOnlyServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "hv-" + NAME: the bridge of host-only network NAME (NAME of at most
// kLongestHostOnlyName characters, so the bridge's name fits Linux's 15).
std::string host_only_bridge_name(const std::string& name);

}  // namespace hostvisor::net
