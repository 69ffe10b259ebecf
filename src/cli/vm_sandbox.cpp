#include "cli/vm_sandbox.h"

#include <linux/capability.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <variant>

#include "block/image_open.h"
#include "net/switch/switch_paths.h"

namespace hostvisor::cli {

namespace fs = std::filesystem;
using sandbox::FsAccess;
using sandbox::FsRule;

namespace {

std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

std::string parent_of(const std::string& path) {
  const std::string parent = fs::path(absolute(path)).parent_path().string();
  return parent.empty() ? "/" : parent;
}

// A file the VM writes and may have to create: the file itself if it is
// there, else the directory it will be made in.
FsRule written_file(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) return {.path = path, .access = FsAccess::kReadWrite};
  return {.path = parent_of(path), .access = FsAccess::kCreate};
}

// What every VM process reads: the C library and the loader (dlopen of
// libslirp and Zydis, the switch's exec), the firmware in /usr/share, and
// the host facts read while a machine is built (each reboot builds anew).
void add_system_rules(sandbox::FsRules& rules) {
  for (const char* path : {"/usr", "/lib", "/lib64"}) rules.push_back({path, FsAccess::kReadExec, true});
  for (const char* path : {"/etc/ld.so.cache", "/etc/localtime", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
                           "/etc/gai.conf", "/etc/host.conf"})
    rules.push_back({path, FsAccess::kRead, true});  // libslirp forwards DNS to resolv.conf's servers
  for (const char* path : {"/proc/self", "/proc/cpuinfo", "/sys/module", "/sys/kernel/mm", "/sys/devices/system/cpu",
                           "/sys/devices/system/node"})
    rules.push_back({path, FsAccess::kRead, true});
  for (const char* path : {"/dev/kvm", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"})
    rules.push_back({path, FsAccess::kDevice, true});
  // The switch of an internal or host-only network is this binary, exec'd.
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored);
  if (!self.empty()) rules.push_back({self.string(), FsAccess::kReadExec});
}

Result<void> add_disk_rules(const block::DiskOption& disk, bool snapshots, sandbox::FsRules& rules) {
  const std::vector<std::string> chain = HV_TRY(block::backing_chain(disk.path));
  for (size_t i = 0; i < chain.size(); ++i)
    rules.push_back({chain[i], i == 0 && !disk.read_only ? FsAccess::kReadWrite : FsAccess::kRead});
  // A snapshot freezes a writable disk into the snapshot (a hard link) and
  // goes on in a new overlay made beside it under the disk's name.
  if (snapshots && !disk.read_only) rules.push_back({parent_of(disk.path), FsAccess::kCreate});
  return ok();
}

}  // namespace

std::vector<std::string> snapshot_roots(const std::string& snapshot_dir, const std::string& control,
                                        const std::vector<std::string>& write_dirs) {
  std::vector<std::string> roots;
  if (!snapshot_dir.empty()) roots.push_back(parent_of(snapshot_dir));
  if (!control.empty()) roots.push_back(parent_of(control));
  for (const std::string& dir : write_dirs) roots.push_back(absolute(dir));
  return roots;
}

Result<void> check_snapshot_target(const std::string& dir, const std::vector<std::string>& roots) {
  const fs::path target = fs::path(absolute(dir)).parent_path();
  for (const std::string& root : roots) {
    const fs::path root_path(root);
    const auto [end, _] = std::mismatch(root_path.begin(), root_path.end(), target.begin(), target.end());
    if (end == root_path.end()) return ok();
  }
  std::string allowed;
  for (const std::string& root : roots) allowed += (allowed.empty() ? "" : ", ") + root;
  return Error(ErrorCode::kInvalidArgument, "the sandboxed VM may write snapshots only beneath " +
                                                (allowed.empty() ? "nowhere" : allowed) +
                                                " (the directories of --snapshot-dir and --control, and "
                                                "--sandbox-write DIR); start it with --sandbox-write " +
                                                target.string() + ", or --sandbox=off");
}

bool needs_host_network(const MachineConfig& config) {
  for (const NetConfig& nic : config.nets)
    if (!std::holds_alternative<net::NoNetOption>(nic.net) && !std::holds_alternative<net::InternalNetOption>(nic.net))
      return true;
  return false;
}

std::optional<sandbox::TcpRules> vm_tcp_rules(const MachineConfig& config, const std::vector<uint16_t>& extra_bind_ports,
                                              bool bind_any) {
  sandbox::TcpRules tcp{.bind_ports = extra_bind_ports};
  for (const NetConfig& nic : config.nets) {
    if (std::holds_alternative<net::HostOnlyNetOption>(nic.net)) return std::nullopt;
    const auto* user = std::get_if<net::UserNetOption>(&nic.net);
    if (!user) continue;
    if (!user->restrict) tcp.connect_any = true;
    if (bind_any) tcp.bind_any = true;
    for (const net::HostForward& forward : user->forwards)
      if (forward.protocol == net::ForwardProtocol::kTcp) tcp.bind_ports.push_back(forward.host_port);
  }
  std::sort(tcp.bind_ports.begin(), tcp.bind_ports.end());
  tcp.bind_ports.erase(std::unique(tcp.bind_ports.begin(), tcp.bind_ports.end()), tcp.bind_ports.end());
  return tcp;
}

Result<sandbox::SandboxPolicy> vm_sandbox_policy(const MachineConfig& config, const VmSandboxPaths& paths) {
  sandbox::SandboxPolicy policy;
  sandbox::FsRules& rules = policy.rules;
  add_system_rules(rules);
  const bool snapshots = !paths.snapshot_roots.empty();
  for (const std::string& root : paths.snapshot_roots) {
    if (!fs::is_directory(root))
      return Error(ErrorCode::kNotFound, "snapshots go beneath " + root + ", which is not a directory");
    rules.push_back({root, FsAccess::kCreate});
  }
  // Files the machine only reads: one that is missing gets no rule, so
  // building the machine reports it with the option that named it.
  for (const std::string& path : {config.kernel_path, config.initrd_path})
    if (!path.empty()) rules.push_back({.path = path, .access = FsAccess::kRead, .optional = true});
  for (const DiskConfig& disk : config.disks) HV_TRY(add_disk_rules(disk.disk, snapshots, rules));
  for (const CdromConfig& cdrom : config.cdroms) rules.push_back({.path = cdrom.path, .access = FsAccess::kRead, .optional = true});
  for (const FwCfgFileConfig& file : config.fw_cfg_files)
    if (!file.host_path.empty()) rules.push_back({.path = file.host_path, .access = FsAccess::kRead, .optional = true});
  for (const ShareConfig& share : config.shares)
    rules.push_back({share.host_dir, share.read_only ? FsAccess::kRead : FsAccess::kShare});
  if (!config.uefi_vars.empty()) rules.push_back(written_file(config.uefi_vars));
  if (!config.firmware_log.empty()) rules.push_back(written_file(config.firmware_log));
  // Sockets are bound at a temporary name and renamed into place, a busy
  // one replaced by one with the pid in its name: their directories.
  for (const std::string& socket : {paths.control, config.qga_socket})
    if (!socket.empty()) rules.push_back({parent_of(socket), FsAccess::kCreate});
  // vsock: the guest's connections to host port P go to PATH_P's listener.
  if (config.vsock) rules.push_back({parent_of(config.vsock->uds_path), FsAccess::kCreate});
  // The console log is renamed to FILE.1 at 4 MiB and made anew.
  if (!paths.console_log.empty()) rules.push_back({parent_of(paths.console_log), FsAccess::kCreate});
  if (!paths.restore.empty()) rules.push_back({paths.restore, FsAccess::kRead});

  bool tun = false, switch_process = false, net_admin = false;
  for (const NetConfig& nic : config.nets) {
    std::visit(
        [&](const auto& option) {
          using T = std::decay_t<decltype(option)>;
          if constexpr (std::is_same_v<T, net::TapNetOption> || std::is_same_v<T, net::BridgeNetOption>) {
            tun = true;
            net_admin = true;
          } else if constexpr (std::is_same_v<T, net::InternalNetOption>) {
            switch_process = true;
          } else if constexpr (std::is_same_v<T, net::HostOnlyNetOption>) {
            tun = switch_process = net_admin = true;
          }
        },
        nic.net);
  }
  if (tun) {
    rules.push_back({"/dev/net/tun", FsAccess::kDevice});
    for (const char* path : {"/sys/class/net", "/sys/devices/virtual/net", "/proc/net"})
      rules.push_back({path, FsAccess::kRead, true});
  }
  if (switch_process) {
    // The first VM on a network starts its switch (this binary, exec'd):
    // it inherits the sandbox, so its socket, lock and log directory is
    // allowed, and with host-only networks the host bridge's sysctls.
    rules.push_back({HV_TRY(net::switch_directory()), FsAccess::kCreate});
    rules.push_back({"/proc/sys/net", FsAccess::kReadWrite, true});
    // The switch reads its own /proc/self (the host's routes, for a free
    // host-only subnet: /proc/net is /proc/self/net), which is not the VM's.
    rules.push_back({"/proc", FsAccess::kRead});
  }
  // Each boot (a guest reset rebuilds the machine) makes its taps and
  // bridge ports anew, and the host-only server sets its bridge up.
  if (net_admin) policy.keep.push_back({CAP_NET_ADMIN, "taps and bridge ports are made at each boot"});
  if (config.memory_backing.lock) policy.keep.push_back({CAP_IPC_LOCK, "--memory lock=on locks guest RAM"});
  policy.tcp = vm_tcp_rules(config, paths.extra_bind_ports, paths.bind_any_port);
  return policy;
}

}  // namespace hostvisor::cli
