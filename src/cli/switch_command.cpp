#include "cli/switch_command.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>

#include <cstdio>
#include <memory>
#include <string>

#include "base/log.h"
#include "net/host_only/host_only_server.h"
#include "net/net_option.h"
#include "net/switch/network_lock.h"
#include "net/switch/switch_paths.h"
#include "net/switch/switch_server.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::cli {

namespace {
struct SwitchArgs {
  std::string name;
  std::string dhcp;
  std::string host_only;
  bool rootless = false;
  bool lock_held = false;
  std::string seccomp = sandbox::seccomp_mode_name(sandbox::default_seccomp_mode());
};

Result<void> run_switch_server(const SwitchArgs& args, const net::SwitchPaths& paths,
                               std::optional<net::Ipv4Network> host_gateway);

// A host-only network's server, as its first VM starts it: hostonly-NAME
// names its socket and lock, hv-NAME its bridge. With --rootless it is a
// switch with a host gateway instead (no bridge, no privilege).
Result<void> run_host_only_server(const SwitchArgs& args, const net::SwitchPaths& paths) {
  constexpr std::string_view kPrefix = "hostonly-";
  if (!args.name.starts_with(kPrefix) || args.name.size() - kPrefix.size() > net::kLongestHostOnlyName)
    return Error(ErrorCode::kInvalidArgument, "a host-only network's server runs as hostonly-NAME (NAME of 1 to " +
                                                  std::to_string(net::kLongestHostOnlyName) + " characters)");
  auto network = net::parse_ipv4_network(args.host_only);
  if (!network) return network.error().with_context("--hostonly " + args.host_only);
  if (args.rootless) return run_switch_server(args, paths, network.value());
  net::HostOnlyServerOptions options;
  options.bridge = net::host_only_bridge_name(args.name.substr(kPrefix.size()));
  options.network = *network;
  options.socket_path = paths.socket;
  options.lock_path = paths.lock;
  options.log_path = paths.log;
  std::unique_ptr<net::HostOnlyServer> server;
  {
    UniqueFd lock;
    if (!args.lock_held) lock = HV_TRY(net::lock_network(paths.lock));
    server = HV_TRY(net::HostOnlyServer::create(options));
  }
  HV_LOG_INFO("host-only network {}: bridge {} with the host at {}, DHCP for the VMs, listening on {}", args.name,
              options.bridge, net::format_ipv4_address(options.network.host(1)), paths.socket);
  // Its bridge, socket and lock are made: from here it serves ports.
  HV_TRY(sandbox::try_install_thread_filter(sandbox::ThreadKind::kSwitchProcess));
  return server->run();
}

// The switch of an internal network, or (with `host_gateway`) of a rootless
// host-only network.
Result<void> run_switch_server(const SwitchArgs& args, const net::SwitchPaths& paths,
                               std::optional<net::Ipv4Network> host_gateway) {
  net::SwitchServerOptions options;
  options.socket_path = paths.socket;
  options.lock_path = paths.lock;
  options.log_path = paths.log;
  options.host_gateway = host_gateway;
  if (!args.dhcp.empty()) {
    auto network = net::parse_ipv4_network(args.dhcp);
    if (!network) return network.error().with_context("--dhcp " + args.dhcp);
    options.dhcp = *network;
  }
  std::unique_ptr<net::SwitchServer> server;
  {
    // Started by hand: take the lock VMs take, so neither starts a second
    // switch meanwhile. A VM that starts us holds it already (--lock-held).
    UniqueFd lock;
    if (!args.lock_held) lock = HV_TRY(net::lock_network(paths.lock));
    server = HV_TRY(net::SwitchServer::create(options));
  }
  if (host_gateway)
    HV_LOG_INFO("host-only network {} (rootless): listening on {}; the host's gateway is {}, DHCP for {}", args.name,
                paths.socket, net::format_ipv4_address(host_gateway->host(1)), net::format_ipv4_network(*host_gateway));
  else
    HV_LOG_INFO("switch {}: listening on {}{}", args.name, paths.socket,
                options.dhcp ? ", DHCP for " + net::format_ipv4_network(*options.dhcp) : "");
  // Its socket and lock are made: from here it serves ports.
  HV_TRY(sandbox::try_install_thread_filter(sandbox::ThreadKind::kSwitchProcess));
  HV_TRY(server->run());
  const net::SwitchServerCounters c = server->counters();
  HV_LOG_INFO(
      "switch {}: {} ports joined, {} disconnected; {} frames in, {} delivered, {} flooded, {} cut in "
      "software, {} dropped, {} dropped at full port queues",
      args.name, c.ports_joined, c.ports_disconnected, c.forwarding.frames, c.forwarding.delivered,
      c.forwarding.flooded, c.forwarding.segmented, c.forwarding.dropped, c.output_dropped);
  if (host_gateway)
    HV_LOG_INFO("switch {}: the host gateway refused {} frames not for the host; {} forwards added, {} refused",
                args.name, c.gateway_refused, c.forwards_added, c.forwards_refused);
  return ok();
}

Result<void> run_switch(const SwitchArgs& args) {
  const net::SwitchPaths paths = HV_TRY(net::switch_paths(args.name));
  if (!args.host_only.empty()) return run_host_only_server(args, paths);
  if (args.rootless) return Error(ErrorCode::kInvalidArgument, "--rootless goes with --hostonly");
  return run_switch_server(args, paths, std::nullopt);
}
}  // namespace

void add_switch_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<SwitchArgs>();
  auto* cmd = app.add_subcommand(
      "switch",
      "Run the Ethernet switch of internal network NAME in the foreground. The first VM with --net "
      "internal,name=NAME starts one itself; it ends when its last port leaves. Its socket is "
      "$XDG_RUNTIME_DIR/hostvisor/net/NAME.sock, or /tmp/hostvisor-$UID/net/NAME.sock without XDG_RUNTIME_DIR");
  cmd->add_option("NAME", args->name, "The network's name (letters, digits, '.', '_', '-')")->required();
  cmd->add_option("--dhcp", args->dhcp, "Run a DHCP server for CIDR on the segment (no router, no DNS)");
  // How the first VM of a host-only network starts its server; not for users.
  cmd->add_option("--hostonly", args->host_only)->group("");
  cmd->add_flag("--rootless", args->rootless)->group("");
  // How a VM that holds the start lock runs us; not for users.
  cmd->add_flag("--lock-held", args->lock_held)->group("");
  cmd->add_option("--seccomp", args->seccomp,
                  "kill (the default), log or off: the switch's seccomp filter once it serves, as for `hostvisor run` "
                  "(a VM starts its switch with its own --seccomp)")
      ->capture_default_str();
  cmd->callback([args, exit_status] {
    // Its log is the point of a detached switch: joins and leaves at info.
    if (spdlog::get_level() > spdlog::level::info) spdlog::set_level(spdlog::level::info);
    // A peer that leaves while we write is an error to handle, not a signal.
    ::signal(SIGPIPE, SIG_IGN);
    auto seccomp = sandbox::parse_seccomp_mode(args->seccomp);
    if (!seccomp) {
      std::fprintf(stderr, "hostvisor: switch: %s\n", seccomp.error().message().c_str());
      *exit_status = 2;
      return;
    }
    sandbox::set_process_seccomp_mode(*seccomp);
    auto outcome = run_switch(*args);
    if (!outcome) {
      std::fprintf(stderr, "hostvisor: switch %s: %s\n", args->name.c_str(), outcome.error().message().c_str());
      *exit_status = outcome.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
      return;
    }
    *exit_status = 0;
  });
}

}  // namespace hostvisor::cli
