#include "cli/run_command.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>

#include "base/log.h"
#include "base/progress_line.h"
#include "base/size.h"
#include "cli/balloon_option.h"
#include "cli/device_options.h"
#include "cli/fw_cfg_option.h"
#include "cli/memory_option.h"
#include "cli/vm_sandbox.h"
#include "control/control_server.h"
#include "control/vm_controller.h"
#include "guest/default_guest/default_guest.h"
#include "hv/emu/jit/tier_options.h"
#include "net/host_only/host_only_port.h"
#include "net/mac_address.h"
#include "net/switch/switch_launcher.h"
#include "net/switch/switch_paths.h"
#include "sandbox/jail/capabilities.h"
#include "sandbox/jail/jail.h"
#include "sandbox/seccomp/thread_filter.h"
#include "snapshot/snapshot_reader.h"
#include "vmm/disk_snapshots.h"
#include "vmm/machine.h"
#include "vmm/machine_config_codec.h"
#include "vmm/stop_signals.h"

namespace hostvisor::cli {

namespace {

struct RunOptions {
  std::string kernel, initrd, append, memory = "256M", accel = "auto", console = "serial";
  unsigned cpus = 1;
  std::vector<std::string> disks;
  std::vector<std::string> cdroms;  // --cdrom
  std::vector<std::string> nets;
  std::vector<std::string> fw_cfg_files;
  std::vector<std::string> shares;  // --share
  std::string balloon;  // --balloon's text, when given
  bool balloon_given = false;
  std::string vsock;  // --vsock; with --restore it replaces the snapshot's socket and CID
  bool debug_exit = false;
  bool no_reboot = false;
  std::string qga;           // --qga PATH: qemu-guest-agent's port, served on PATH
  std::string snapshot_dir;  // where Ctrl-A s / Ctrl-A S write
  std::string restore;       // a snapshot to continue
  std::string restore_mode = "map";
  bool clone = false;
  bool verify = false;  // --verify: check the memory file before a mapped restore
  std::string control;      // --control PATH: the control socket
  bool headless = false;    // the console is not the terminal's
  std::string console_log;  // --console-log FILE
  std::string firmware;      // --firmware, when given
  std::string firmware_log;  // --firmware-log PATH
  // Options that describe the machine, given on this command line: a
  // restore takes the machine from the snapshot and refuses them.
  std::vector<std::string> machine_options_given;
  bool accel_given = false;
  std::string emu_tier, emu_code_cache;  // the software CPU's tier (empty: HOSTVISOR_EMU_TIER's or jit)
  std::string sandbox = "on";              // --sandbox on|off
  std::vector<std::string> sandbox_write;  // --sandbox-write DIR: where snapshots may also go
  std::vector<std::string> sandbox_bind;   // --sandbox-bind PORT|any: TCP ports hostfwd-add may listen on
  bool jail = false;                       // --jail: namespaces and a private root
  std::optional<uid_t> jail_uid;           // --jail-uid (root only)
  std::optional<gid_t> jail_gid;           // --jail-gid (root only)
  std::string seccomp = sandbox::seccomp_mode_name(sandbox::default_seccomp_mode());
};

void fail(const std::string& message) { std::fprintf(stderr, "hostvisor: %s\n", message.c_str()); }

// Where the default guest's vsock socket goes, so `hostvisor agent --vsock`
// has a predictable place: <runtime>/vm/default-guest.vsock, the runtime
// directory being the internal networks' ($XDG_RUNTIME_DIR/hostvisor or
// /tmp/hostvisor-$UID). A second default guest while the first runs gets
// default-guest-<pid>.vsock.
Result<std::string> default_guest_vsock_path() {
  const std::string net_directory = HV_TRY(net::switch_directory());
  const std::string directory = net_directory.substr(0, net_directory.rfind('/')) + "/vm";
  HV_TRY(net::ensure_private_directory(directory));
  return directory + "/default-guest.vsock";
}

Result<RestoreMode> parse_restore_mode(const std::string& text) {
  if (text == "map") return RestoreMode::kMap;
  if (text == "copy") return RestoreMode::kCopy;
  return Error(ErrorCode::kInvalidArgument, "--restore-mode " + text + ": must be map or copy");
}

// Runs machines built by `build` until the run ends; a guest reset builds
// the next one from `config` (a fresh boot, also after a restore).
using FirstBuild = std::function<Result<std::unique_ptr<Machine>>(StopSignals&, const MachineConsole&)>;
int run_machines(const RunOptions& options, const MachineConfig& config, const FirstBuild& first_build);

int restore(const RunOptions& options) {
  for (const std::string& given : options.machine_options_given) {
    if (given == "--net") continue;  // host-side NAT options, checked below
    fail("--restore takes the machine from the snapshot; " + given + " cannot be given with it");
    return 2;
  }
  auto mode = parse_restore_mode(options.restore_mode);
  if (!mode) {
    fail(mode.error().message());
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  auto snapshot = snapshot::Snapshot::open(options.restore);
  if (!snapshot) {
    fail(snapshot.error().message());
    return 1;
  }
  // A mapped restore reads guest RAM only as the guest touches it, so its
  // memory file is checked only when asked; a copy restore checks it as it
  // reads it (Machine::restore_memory).
  if (options.verify && *mode == RestoreMode::kMap) {
    if (auto verified = snapshot->verify_memory(); !verified) {
      fail(verified.error().message());
      return 1;
    }
    if (!snapshot->has_memory_checksums())
      std::fprintf(stderr, "hostvisor: --verify: snapshot %s (format %u) has no memory checksums to check\n",
                   options.restore.c_str(), snapshot->header().format_version);
  }
  auto saved = decode_machine_config(snapshot->header().machine_config);
  if (!saved) {
    fail("snapshot " + options.restore + ": " + saved.error().message());
    return 1;
  }
  MachineConfig config = saved->config;
  if (!options.nets.empty()) {
    if (auto nets = apply_restore_net_options(config.nets, options.nets); !nets) {
      fail(nets.error().message());
      return 2;
    }
  }
  // The qemu-guest-agent port comes back with the snapshot, on its socket
  // (or one of this run's own when the original still holds it); --qga
  // moves it. A snapshot from before the port was recorded has none, and
  // --qga then gives one (the restore refuses a console that differs).
  if (!options.qga.empty()) {
    config.qga_socket = options.qga;
  } else if (!config.qga_socket.empty()) {
    config.qga_own_path_if_busy = true;
  }
  if (options.accel_given) {
    auto accel = parse_accel(options.accel);
    if (!accel) {
      fail("--accel: " + accel.error().message());
      return 2;
    }
    config.accel = *accel;
  }
  if (!options.vsock.empty()) {
    // A clone beside its running original needs a socket of its own (and
    // may take a CID of its own: the guest hears of it by TRANSPORT_RESET).
    if (!config.vsock) {
      fail("--vsock: the snapshot's machine has no vsock device to move");
      return 2;
    }
    auto vsock = parse_vsock_config(options.vsock);
    if (!vsock) {
      fail(vsock.error().message());
      return 2;
    }
    vsock->transport = config.vsock->transport;
    config.vsock = *vsock;
  } else if (config.vsock) {
    // The snapshot's socket, unless its original VM still holds it.
    config.vsock->own_path_if_busy = true;
  }
  // Each run of a snapshot writes its disks into overlays of its own.
  auto overlays = create_restore_overlays(*snapshot, config);
  if (!overlays) {
    fail("snapshot " + options.restore + ": " + overlays.error().message());
    return 1;
  }
  for (size_t i = 0; i < overlays->size(); ++i)
    if (!(*overlays)[i].empty())
      std::fprintf(stderr, "hostvisor: disk %zu: writes go to %s\n", i, (*overlays)[i].c_str());
  const RestoreOptions restore_options{.mode = *mode, .clone = options.clone};
  return run_machines(
      options, config, [&](StopSignals& signals, const MachineConsole& console) -> Result<std::unique_ptr<Machine>> {
        auto machine = HV_TRY(Machine::restore(config, *snapshot, restore_options, signals, console));
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "hostvisor: restored %s (%s%s) in %.1f ms\n", options.restore.c_str(),
                     machine->restored_with() == RestoreMode::kMap ? "map" : "copy", options.clone ? ", clone" : "",
                     ms);
        const auto& macs = machine->clone_macs();
        for (size_t i = 0; i < macs.size(); ++i)
          std::fprintf(stderr, "hostvisor: NIC %zu: MAC %s, the clone's own (the snapshot's was %s)\n", i,
                       net::format_mac_address(macs[i].clone).c_str(),
                       net::format_mac_address(macs[i].snapshot).c_str());
        return machine;
      });
}

// Removes the file at `path` once this process has ended, however it ends
// (a SIGKILL too), from a child forked now: the sandbox entered later
// forbids removing files from the directory it is in. The child waits for
// the end of a pipe that only this process (and what it forks) holds open.
void remove_after_exit(const std::string& path) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[1]);
    for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(signal, SIG_IGN);
    char byte;
    while (::read(fds[0], &byte, 1) != 0 && errno == EINTR) {
    }
    ::unlink(path.c_str());
    ::_exit(0);
  }
  ::close(fds[0]);
  if (pid < 0) ::close(fds[1]);
  // fds[1] stays open for the life of this process.
}

// A fresh copy of OVMF's variable store in $TMPDIR (or /tmp) for one run.
Result<std::string> make_run_uefi_vars() {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/hostvisor-ovmf-vars-XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) return Error(ErrorCode::kIo, "a temporary copy of OVMF's variable store in " + path + ": " +
                                               std::strerror(errno));
  ::close(fd);
  ::unlink(path.c_str());  // create_uefi_vars makes it anew, exclusively
  HV_TRY(create_uefi_vars(path));
  return path;
}

int run(const RunOptions& options) {
  auto seccomp = sandbox::parse_seccomp_mode(options.seccomp);
  if (!seccomp) {
    fail(seccomp.error().message());
    return 2;
  }
  sandbox::set_process_seccomp_mode(*seccomp);
  if (auto tier = emu::jit::set_process_tier_options(options.emu_tier, options.emu_code_cache); !tier) {
    fail(tier.error().message());
    return 2;
  }
  if (!options.restore.empty()) return restore(options);
  MachineConfig config;
  auto console = parse_console_device(options.console);
  if (!console) {
    fail(console.error().message());
    return 2;
  }
  config.console = *console;
  config.kernel_path = options.kernel;
  config.initrd_path = options.initrd;
  config.cmdline = options.append;
  config.cpus = options.cpus;
  config.debug_exit = options.debug_exit;
  if (!options.firmware.empty()) {
    auto firmware = parse_firmware_option(options.firmware);
    if (!firmware) {
      fail(firmware.error().message());
      return 2;
    }
    config.firmware = firmware->kind;
    config.uefi_vars = firmware->uefi_vars;
  } else if (options.kernel.empty() && !options.cdroms.empty()) {
    // A CD is booted by firmware; an explicit --firmware wins.
    config.firmware = FirmwareKind::kBios;
  }
  // Without vars=PATH, OVMF's variables live in a copy for this run: kept
  // across guest reboots (the machine is rebuilt, the file stays), removed
  // when hostvisor ends.
  if (config.firmware == FirmwareKind::kUefi && config.uefi_vars.empty()) {
    auto created = make_run_uefi_vars();
    if (!created) {
      fail(created.error().message());
      return 1;
    }
    config.uefi_vars = *created;
    remove_after_exit(*created);
  }
  config.firmware_log = options.firmware_log;
  if (!config.firmware_log.empty() && config.firmware == FirmwareKind::kNone) {
    fail("--firmware-log: there is no firmware to log without --firmware bios or uefi");
    return 2;
  }
  // With firmware the guest boots from its disks: no default guest, and
  // only the devices asked for.
  const bool default_guest = options.kernel.empty() && config.firmware == FirmwareKind::kNone;
  auto memory = parse_memory_option(options.memory);
  if (!memory) {
    fail(memory.error().message());
    return 2;
  }
  config.memory_bytes = memory->size;
  config.memory_backing = memory->backing;
  auto accel = parse_accel(options.accel);
  if (!accel) {
    fail("--accel: " + accel.error().message());
    return 2;
  }
  config.accel = *accel;
  for (const auto& text : options.disks) {
    auto disk = parse_disk_config(text);
    if (!disk) {
      fail("--disk " + text + ": " + disk.error().message());
      return 2;
    }
    config.disks.push_back(*disk);
  }
  for (const auto& text : options.cdroms) {
    auto cdrom = parse_cdrom_config(text);
    if (!cdrom) {
      fail("--cdrom " + text + ": " + cdrom.error().message());
      return 2;
    }
    config.cdroms.push_back(*cdrom);
  }
  // The default guest brings every NIC up with DHCP at boot, so with no
  // --net it gets the NAT and `make run` is online; any --net (none
  // included) replaces that. A kernel of the user's own gets only what is
  // asked for.
  std::vector<std::string> nets = options.nets;
  if (default_guest && nets.empty()) nets.push_back("user");
  for (const auto& text : nets) {
    auto net = parse_net_config(text);
    if (!net) {
      fail(net.error().message());
      return 2;
    }
    config.nets.push_back(*net);
  }
  config.qga_socket = options.qga;
  for (const auto& text : options.fw_cfg_files) {
    auto file = parse_fw_cfg_option(text);
    if (!file) {
      fail(file.error().message());
      return 2;
    }
    config.fw_cfg_files.push_back(*file);
  }
  // The default guest gets a balloon, so free page reporting hands the
  // memory it frees back to the host out of the box; a kernel of the user's
  // own gets one only when asked (--balloon=off: none either way).
  if (options.balloon_given || default_guest) {
    auto balloon = parse_balloon_option(options.balloon_given ? options.balloon : "on");
    if (!balloon) {
      fail(balloon.error().message());
      return 2;
    }
    config.balloon = *balloon;
  }
  if (!options.vsock.empty()) {
    auto vsock = parse_vsock_config(options.vsock);
    if (!vsock) {
      fail(vsock.error().message());
      return 2;
    }
    config.vsock = *vsock;
  }
  for (const auto& text : options.shares) {
    auto share = parse_share_config(text);
    if (!share) {
      fail(share.error().message());
      return 2;
    }
    for (const auto& other : config.shares) {
      if (other.tag == share->tag) {
        fail("--share tag=" + share->tag + ": two shares have this tag; give each its own");
        return 2;
      }
    }
    config.shares.push_back(*share);
  }
  if (default_guest && !config.vsock) {
    // The default guest runs the agent: give it a vsock device.
    auto path = default_guest_vsock_path();
    if (!path) {
      fail("the default guest's vsock socket: " + path.error().message());
      return 1;
    }
    config.vsock = VsockConfig{.guest_cid = 3, .uds_path = *path, .own_path_if_busy = true};
  }
  if (default_guest) {
    // No kernel: the default guest (Debian's kernel + busybox), assembled
    // into the cache on first use, once every option has been checked, so a
    // mistyped flag never waits for a download.
    guest::DefaultGuestOptions guest_options;
    // The guest's console (and its shell) on the device the terminal types into.
    guest_options.console = config.console == ConsoleDevice::kVirtio ? "hvc0" : "ttyS0";
    // On a terminal, the build's steps rewrite one line; elsewhere (a VM's
    // log under the daemon) each step is a line that says why the first
    // start took long.
    ProgressLine build_line("hostvisor");
    guest_options.progress = [&build_line](const std::string& line) {
      if (ProgressLine::stderr_is_terminal())
        build_line.step(line);
      else
        std::fprintf(stderr, "hostvisor: %s\n", line.c_str());
    };
    if (guest_options.agent_path.empty())
      std::fprintf(stderr,
                   "hostvisor: no hostvisor-agent beside this executable: the default guest runs without the agent\n");
    auto guest = guest::prepare_default_guest(guest_options);
    build_line.finish();
    if (!guest) {
      fail("the default guest: " + guest.error().message());
      return 1;
    }
    config.kernel_path = guest->kernel_path;
    if (config.initrd_path.empty()) config.initrd_path = guest->initrd_path;
    if (config.cmdline.empty()) config.cmdline = guest->cmdline;
    // The default guest's init mounts each share at /mnt/TAG: Linux 6.1
    // lists no virtio-fs tags in sysfs, so the tags travel on the command line.
    if (const std::string shares = share_cmdline_parameter(config.shares); !shares.empty())
      config.cmdline += " " + shares;
  }
  assign_stable_macs(run_vm_identity(config.kernel_path, config.disks), config.nets);

  return run_machines(options, config, [&](StopSignals& signals, const MachineConsole& console) {
    return Machine::create(config, signals, console);
  });
}

// --jail: the switch of each internal network is started (or found) from
// here, before the jail's new PID namespace: one started by the jailed VM
// would live in its namespace and end with it, taking the network from
// every other VM on it. The switch confines itself (its seccomp filter,
// `hostvisor switch --seccomp`). The connection is kept open for the run: in
// the jail's outer process, which waits for the VM, it holds the switch
// until the jailed VM has joined (a switch ends with its last port); the
// jailed VM closes its copies (close_held_switch_connections).
std::vector<UniqueFd>& held_switch_connections() {
  static std::vector<UniqueFd> held;
  return held;
}

// A host-only network's server likewise, in its rootless form whatever this
// process may do: the jailed VM, in a user namespace of its own, holds no
// CAP_NET_ADMIN over the host's network (net::has_net_admin), so it could
// put no tap on a bridge; it joins the rootless form as a switch port. (If
// the privileged form already runs, this only joins it, and the VM says it
// cannot.)
Result<void> start_switches_outside_the_jail(const MachineConfig& config) {
  for (const NetConfig& nic : config.nets) {
    std::optional<net::SwitchLaunch> launch;
    std::string option;
    if (const auto* internal = std::get_if<net::InternalNetOption>(&nic.net)) {
      launch = net::SwitchLaunch{.name = internal->name, .dhcp = internal->dhcp};
      option = "--net internal,name=" + internal->name;
    } else if (const auto* host_only = std::get_if<net::HostOnlyNetOption>(&nic.net)) {
      option = "--net hostonly,name=" + host_only->name;
      auto subnet = net::host_only_subnet(*host_only);
      if (!subnet) return std::move(subnet).error().with_context(option);
      launch = net::SwitchLaunch{.name = "hostonly-" + host_only->name, .host_only = *subnet, .rootless = true};
    } else {
      continue;
    }
    // No reaper thread: the jail needs this process to have one thread.
    launch->reap = false;
    auto socket = net::connect_to_switch(*launch);
    if (!socket) return std::move(socket).error().with_context(option);
    held_switch_connections().push_back(std::move(socket).value());
  }
  return {};
}

void close_held_switch_connections() { held_switch_connections().clear(); }

// --jail (namespaces and a private root holding exactly the sandbox's
// paths), then the sandbox (vm_sandbox.h) unless --sandbox=off. Called
// while the process has one thread (a new user namespace, no_new_privs,
// Landlock and capabilities all need that or are per thread; every thread
// started later inherits them), before the first machine is built: a
// reboot builds the machine again under the same rules, so the first build
// proves them. Returns the check for snapshot directories asked for over
// the control socket (unset when anything goes).
Result<std::function<Result<void>(const std::string&)>> confine_vm_process(const RunOptions& options,
                                                                           const MachineConfig& config) {
  const sandbox::SandboxMode mode = HV_TRY(sandbox::parse_sandbox_mode(options.sandbox));
  if (mode == sandbox::SandboxMode::kOff && !options.jail) return std::function<Result<void>(const std::string&)>();
  const std::vector<std::string> roots = snapshot_roots(options.snapshot_dir, options.control, options.sandbox_write);
  VmSandboxPaths paths{.control = options.control,
                       .console_log = options.console_log,
                       .restore = options.restore,
                       .snapshot_roots = roots};
  for (const std::string& port : options.sandbox_bind) {  // "any" or 1..65535, checked by the parser
    if (port == "any")
      paths.bind_any_port = true;
    else
      paths.extra_bind_ports.push_back(static_cast<uint16_t>(std::stoul(port)));
  }
  const sandbox::SandboxPolicy policy = HV_TRY(vm_sandbox_policy(config, paths));
  if (options.jail) {
    const bool host_network = needs_host_network(config);
    // With --jail-uid the VM runs as another user than the switch would.
    if (!options.jail_uid) HV_TRY(start_switches_outside_the_jail(config));
    auto jailed = sandbox::enter_jail(
        {.paths = policy.rules, .new_network = !host_network, .uid = options.jail_uid, .gid = options.jail_gid});
    close_held_switch_connections();
    if (!jailed && jailed.error().code() != ErrorCode::kUnsupported) return jailed.error();
    if (!jailed)
      std::fprintf(stderr, "hostvisor: --jail: %s: running without namespaces\n", jailed.error().message().c_str());
    else if (host_network)
      std::fprintf(stderr,
                   "hostvisor: --jail: the host's network namespace is kept (--net user, tap, bridge and "
                   "hostonly reach the host's network)\n");
  }
  if (mode == sandbox::SandboxMode::kOff) return std::function<Result<void>(const std::string&)>();
  const sandbox::SandboxOutcome outcome = HV_TRY(sandbox::enter_sandbox(policy));
  if (const std::string missing = outcome.missing(); !missing.empty())
    std::fprintf(stderr, "hostvisor: sandbox: %s\n", missing.c_str());
  HV_LOG_INFO("sandbox: no_new_privs; {}; capabilities {}{}", sandbox::describe_landlock(outcome, policy.tcp),
              outcome.capabilities_dropped ? "dropped" : "none held",
              outcome.bounding_set_dropped ? " (and the bounding set)" : "");
  for (const sandbox::KeptCapability& kept : policy.keep)
    HV_LOG_INFO("sandbox: kept capability {}: {}", sandbox::capability_name(kept.capability), kept.why);
  return std::function<Result<void>(const std::string&)>(
      [roots](const std::string& dir) { return check_snapshot_target(dir, roots); });
}

int run_machines(const RunOptions& options, const MachineConfig& config, const FirstBuild& first_build) {
  auto snapshot_check = confine_vm_process(options, config);
  if (!snapshot_check) {
    fail((options.jail ? "--jail: " : "sandbox: ") + snapshot_check.error().message());
    return snapshot_check.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
  }
  // From here on SIGINT, SIGTERM and SIGHUP end the run cleanly (status 0,
  // terminal restored) whenever they come, across reboots. Before this, while
  // the options are read and the default guest is assembled, they end
  // hostvisor the ordinary way, at once (no guest runs yet and the terminal
  // is untouched). Installed before any thread exists, so every thread
  // inherits the blocked mask.
  auto signals = StopSignals::install();
  if (!signals) {
    fail(signals.error().message());
    return 1;
  }
  // The set-up filter, before the first thread and the first machine: every
  // thread of the process (and the switch it spawns) runs beneath it, and
  // each adds its own kind's (sandbox/seccomp/allow_lists.h).
  if (auto confined = sandbox::try_install_thread_filter(sandbox::ThreadKind::kSetup); !confined) {
    fail(confined.error().message());
    return 1;
  }
  // The console's output (the terminal unless --headless, the log, the
  // control socket's attachments) and the control socket outlive each
  // machine: a reboot keeps them. The socket's thread starts after the
  // signals are blocked, so it inherits the mask.
  auto console_output = ConsoleOutput::create({.to_stdout = !options.headless, .log_path = options.console_log});
  if (!console_output) {
    fail(console_output.error().message());
    return 1;
  }
  const MachineConsole console{.output = *console_output, .headless = options.headless};
  std::unique_ptr<control::VmController> controller;
  std::unique_ptr<control::ControlServer> server;
  if (!options.control.empty()) {
    controller = std::make_unique<control::VmController>(
        *console_output,
        control::RunFacts{
            .headless = options.headless, .restored_from = options.restore, .check_snapshot_dir = *snapshot_check});
    auto started = control::ControlServer::start(options.control, controller->hooks());
    if (!started) {
      fail(started.error().message());
      return 1;
    }
    server = std::move(*started);
    controller->set_server(server.get());
  }
  // Every way out: the subscribers hear the end, the socket file goes.
  auto finish = [&](int status, const std::string& reason) {
    if (server) server->stop({{"event", "state"}, {"state", "stopped"}, {"reason", reason}, {"status", status}});
    return status;
  };
  auto stopped = [&](int signal) {
    std::fprintf(stderr, "\r\nhostvisor: %s\n", StopSignals::describe_stop(signal).c_str());
    return finish(0, StopSignals::describe_stop(signal));
  };

  // A guest reset reboots: the machine is built afresh from the same
  // configuration (RAM cleared, devices reset, kernel reloaded), as a PC's
  // firmware would start over. --no-reboot ends the run instead.
  for (bool first = true;; first = false) {
    // A signal that came while the last machine was torn down ends the run
    // here rather than after a whole boot of the next one.
    if (const int signal = (*signals)->take().stop_signal) return stopped(signal);
    auto machine = first ? first_build(**signals, console) : Machine::create(config, **signals, console);
    if (!machine) {
      fail(machine.error().message());
      return finish(1, machine.error().message());
    }
    if (first) {
      std::fprintf(stderr, "hostvisor: accel %s: %s\n", (*machine)->backend_name(), (*machine)->accel_reason().c_str());
      if (const std::string socket = (*machine)->vsock_socket(); !socket.empty())
        std::fprintf(stderr, "hostvisor: guest agent: hostvisor agent --vsock %s exec -- CMD (or shell, cp, info)\n",
                     socket.c_str());
    }
    (*machine)->set_snapshot_dir(options.snapshot_dir);
    if (controller)
      controller->machine_running(machine->get(), !first ? "reboot" : options.restore.empty() ? "started" : "restored");
    RunOutcome outcome = (*machine)->run();
    const bool reboot = outcome.kind == RunOutcome::Kind::kReset && !options.no_reboot;
    const std::string reason = reboot                    ? "the guest reset the machine; rebooting"
                               : outcome.message.empty() ? "the guest powered off"
                                                         : outcome.message;
    if (controller) controller->machine_ended(reason);
    if (reboot) {
      std::fprintf(stderr, "\r\nhostvisor: %s\n", reason.c_str());
      continue;
    }
    if (!outcome.message.empty()) std::fprintf(stderr, "\r\nhostvisor: %s\n", outcome.message.c_str());
    return finish(outcome.exit_status, reason);
  }
}

}  // namespace

void add_run_command(CLI::App& app, int* exit_status) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Boot a guest on this terminal (the guest's console)");
  cmd->add_option("--kernel", options->kernel,
                  "Kernel to boot: a Linux bzImage, an ELF64 (PVH or 64-bit entry) or a multiboot v1 image "
                  "(default: the built-in default guest)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--initrd", options->initrd, "Initial ramdisk (multiboot: module 0)")->check(CLI::ExistingFile);
  cmd->add_option("--append", options->append, "Kernel command line");
  cmd->add_option("--memory,-m", options->memory,
                  "Guest RAM: SIZE[,hugepages=on|thp][,lock=on][,prealloc=on][,merge=on][,shared=on], e.g. 2G or "
                  "1G,hugepages=thp. hugepages=on: 2 MiB pages from the host's hugetlbfs pool (too small a pool is an "
                  "error at start); thp: transparent huge pages; lock=on: mlock, never swapped (needs "
                  "RLIMIT_MEMLOCK or CAP_IPC_LOCK); prealloc=on: every page populated at start; merge=on: KSM "
                  "merges identical pages (not with shared=on or hugepages=on); shared=on: a shared memfd. RAM is "
                  "private anonymous memory unless hugepages=on or shared=on needs a memfd")
      ->capture_default_str();
  cmd->add_option("--disk", options->disks,
                  "Attach a disk image as virtio-blk (repeatable): FILE[,format=raw|qcow2][,cache=writeback|none|"
                  "unsafe][,readonly=on][,discard=on][,transport=pci|mmio][,bootindex=N] (bootindex: the firmware's "
                  "boot order, lowest first)");
  cmd->add_option("--cdrom", options->cdroms,
                  "Attach a read-only CD-ROM drive with ISO as its medium (repeatable): ISO[,bus=scsi|ahci]"
                  "[,bootindex=N]; bus=scsi (the default) is virtio-scsi, bus=ahci an ATAPI drive on a port of "
                  "the AHCI controller (up to 6). Without "
                  "--kernel it implies --firmware bios (an explicit --firmware wins)");
  cmd->add_option("--net", options->nets,
                  "Add a virtio-net interface (repeatable): user[,hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:"
                  "GUESTPORT]...[,net=CIDR][,ipv6=on|off][,restrict=on] (user-mode NAT, no privileges; an empty "
                  "HOSTADDR is 127.0.0.1; a bare --net is user), tap,ifname=NAME, internal,name=NAME[,dhcp=CIDR] (a "
                  "VM-to-VM network with no host and no outside, no privileges; the first VM on NAME starts its "
                  "switch, `hostvisor switch`), bridge,br=BRIDGE (a new tap on that host bridge; needs "
                  "CAP_NET_ADMIN), hostonly,name=NAME[,net=CIDR][,hostfwd=...]... (the host and the VMs on NAME, "
                  "nothing beyond, the host at .1, DHCP for the VMs: with CAP_NET_ADMIN a host bridge hv-NAME, "
                  "without it a switch with a host gateway that takes hostfwd=), or none; each takes "
                  "[,mac=52:54:00:12:34:56][,rate=BYTES][,transport=pci|mmio]. "
                  "Without mac= a NIC's MAC is derived from the "
                  "kernel's path, the disks' paths and the NIC's index, so it stays the same across runs. The "
                  "default guest gets --net user unless any --net is given (--net none: no NIC)")
      // A bare --net is the NAT: CLI11 hands over the default text for an
      // option given without a value.
      ->expected(0, 1)
      ->default_str("user")
      // expected(0, 1) alone caps the option at one use; --net repeats.
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--console", options->console,
                  "Which guest device the terminal types into: serial (the 16550 UART, ttyS0) or virtio (the virtio "
                  "console, hvc0; the default guest then runs its console and shell there). Both print to the "
                  "terminal")
      ->capture_default_str();
  cmd->add_option("--vsock", options->vsock,
                  "Add a virtio-vsock device: cid=N,uds=PATH[,transport=pci|mmio]. Host programs connect to the unix "
                  "socket PATH and write 'CONNECT <port>\\n' to reach guest port <port> (answer: 'OK <hostport>\\n'); "
                  "the guest's connections to host port P go to a listener at PATH_P. With --restore: the clone's "
                  "own socket and CID");
  cmd->add_option("--share", options->shares,
                  "Share a host directory with the guest as virtio-fs (repeatable): HOSTDIR,tag=TAG[,readonly=on]"
                  "[,cache=auto|always|never][,transport=pci|mmio]. Served in process, as you: the guest reaches "
                  "nothing outside HOSTDIR, and what it creates is yours. The default guest mounts it at /mnt/TAG; "
                  "another guest: mount -t virtiofs TAG DIR. readonly=on: every change fails with EROFS. cache: how "
                  "long the guest trusts what it cached (auto 1 s, always a day, never). A VM with a share cannot be "
                  "snapshotted");
  cmd->add_option("--fw-cfg", options->fw_cfg_files,
                  "Add a file to the guest's fw_cfg (repeatable): name=opt/NAME,file=PATH or name=opt/NAME,string=TEXT "
                  "(QEMU's -fw_cfg; firmware and Linux's qemu_fw_cfg driver read it)");
  cmd->add_option("--balloon", options->balloon,
                  "Add a virtio-balloon device: [deflate-on-oom=on][,free-page-reporting=on|off][,stats-interval="
                  "SECONDS][,transport=pci|mmio]. The console key Ctrl-A b sets its size; memory the guest frees is "
                  "reported and goes back to the host (free-page-reporting, on by default); deflate-on-oom lets a "
                  "guest short of memory take pages back; the guest's memory statistics are asked for every "
                  "stats-interval seconds (5; 0: never). The default guest has one unless --balloon=off")
      ->expected(0, 1)
      ->default_str("on");
  cmd->add_option("--cpus", options->cpus, "Number of vCPUs")->capture_default_str()->check(CLI::Range(1u, kMaxVcpus));
  cmd->add_option("--accel", options->accel, "CPU backend: auto, kvm or emu")->capture_default_str();
  cmd->add_option("--emu-tier", options->emu_tier,
                  "With --accel emu: interp (the interpreter alone) or jit (hot blocks translated to host code); "
                  "default HOSTVISOR_EMU_TIER's, else jit");
  cmd->add_option("--emu-code-cache", options->emu_code_cache,
                  "With --emu-tier jit: the translated code's memory per vCPU, 64K..1G (default 64M); when full it "
                  "is dropped and refilled");
  cmd->add_flag("--debug-exit", options->debug_exit,
                "Add an isa-debug-exit device at port 0xf4: a guest write of v exits with status (v << 1) | 1");
  cmd->add_flag("--no-reboot", options->no_reboot,
                "End the run (status 3) when the guest resets, instead of rebooting");
  cmd->add_option("--qga", options->qga,
                  "Give the virtio console qemu-guest-agent's port (org.qemu.guest_agent.0) and serve it on the unix "
                  "socket PATH, one client at a time (`hostvisor agent --qga PATH ...` talks to qemu-ga through it)")
      ->type_name("PATH");
  cmd->add_option("--snapshot-dir", options->snapshot_dir,
                  "Where the console keys Ctrl-A s (snapshot and go on) and Ctrl-A S (snapshot and quit) write a "
                  "snapshot; one already there is replaced, atomically");
  cmd->add_option("--control", options->control,
                  "Serve the VM's control socket at PATH (a unix socket, mode 0600, only this user): info, pause, "
                  "resume, reset, powerdown, quit, snapshot, hostfwd-add/remove, balloon-set, metrics, console "
                  "attachments and state events, as newline-delimited JSON (docs/vm-control-protocol.md)")
      ->type_name("PATH");
  cmd->add_flag("--headless", options->headless,
                "Do not attach the guest's console to this terminal: stdin is not read (no Ctrl-A keys) and its "
                "output goes only to --control's console attachments and --console-log; hostvisor's own messages "
                "still go to stderr");
  cmd->add_option("--console-log", options->console_log,
                  "Append the guest's console output to FILE (created 0600); at 4 MiB it is renamed to FILE.1 "
                  "and a new FILE started")
      ->type_name("FILE");
  cmd->add_option("--restore", options->restore,
                  "Continue the guest a snapshot holds (the machine, its devices and disks come from the snapshot; "
                  "only --accel, --snapshot-dir, --qga, --vsock, --no-reboot, --control, --headless, --console-log and "
                  "--net may be given with it; --net, one for each of "
                  "its NICs, changes only a user-mode NAT's hostfwd= and rate=, e.g. for each clone's own ports)");
  cmd->add_option("--restore-mode", options->restore_mode,
                  "map: guest RAM is mapped copy-on-write from the snapshot's memory file (fast, lazy; the files "
                  "must stay unchanged while the guest runs); copy: read into fresh RAM")
      ->capture_default_str();
  cmd->add_option(
      "--firmware", options->firmware,
      "What runs at power-on: none (the default: --kernel, or the default guest, is entered directly), "
      "bios (Debian's SeaBIOS, package seabios: it boots the disks, or with --kernel a Linux bzImage through "
      "QEMU's linuxboot option ROM; its output and menus on the serial console), "
      "uefi[,vars=PATH] (Debian's OVMF, package ovmf: it boots EFI disks and ISOs, or with --kernel a Linux bzImage; "
      "its variables, boot entries among them, are kept in PATH, created from OVMF_VARS_4M.fd when missing; "
      "without vars= in a temporary copy for this run)");
  cmd->add_option("--firmware-log", options->firmware_log,
                  "Append the firmware's debug log (QEMU's debug port 0x402) to PATH")
      ->type_name("PATH");
  cmd->add_flag("--clone", options->clone, "With --restore: a clone, with a new MAC for each NIC");
  cmd->add_flag("--verify", options->verify,
                "With --restore: check every chunk of the snapshot's memory file against its checksum before the "
                "guest runs (--restore-mode copy always does, as it reads the file; map does not by default, since "
                "it reads RAM only as the guest touches it)");
  cmd->add_option("--sandbox", options->sandbox,
                  "on: the VM process runs with no_new_privs, without capabilities, and (Landlock) opens only its "
                  "own files: disks and their backing files, shares, firmware, its sockets, logs and snapshot "
                  "directories, and the system's libraries (docs/sandbox.md); off: for debugging")
      ->capture_default_str();
  cmd->add_option("--sandbox-write", options->sandbox_write,
                  "A directory beneath which the sandboxed VM may also write snapshots asked for over --control "
                  "(repeatable; the directories of --snapshot-dir and --control always are)")
      ->type_name("DIR");
  cmd->add_option("--sandbox-bind", options->sandbox_bind,
                  "A host TCP port the sandboxed VM may also listen on, for a forward added later over --control "
                  "(hostfwd-add; repeatable; the host ports of --net's hostfwd= always are); any: every port, "
                  "for a VM with user-mode NAT")
      ->type_name("PORT|any")
      ->check(CLI::IsMember({"any"}) | CLI::Range(1, 65535));
  cmd->add_flag("--jail", options->jail,
                "Run the VM in new user, mount, PID and network namespaces (the host's network is kept for --net "
                "user, tap, bridge and hostonly), with a private root holding only the VM's files and a /dev of "
                "kvm, net/tun, null, zero and urandom, as the caller's uid (docs/sandbox.md)");
  cmd->add_option("--jail-uid", options->jail_uid, "With --jail, started as root: the uid the VM runs as");
  cmd->add_option("--jail-gid", options->jail_gid,
                  "With --jail, started as root: the gid the VM runs as (e.g. the kvm group's, for /dev/kvm)");
  cmd->add_option("--seccomp", options->seccomp,
                  "kill, log or off: each thread runs under a seccomp filter of what its kind needs "
                  "(docs/seccomp.md). kill: a forbidden call is reported (the thread's kind and the call) and "
                  "hostvisor ends with status 159; log: the call goes ahead and the kernel logs it (dmesg); off: no "
                  "filters. Default kill (off in an AddressSanitizer build)")
      ->capture_default_str();
  cmd->footer(
      "Exit status: 0 when the guest powers off, or on Ctrl-A x, SIGINT, SIGTERM or SIGHUP (at any point once the run "
      "has started, reboots included); (v << 1) | 1 when the guest writes v to the debug-exit port; 3 when the guest "
      "resets with --no-reboot; 4 on a triple fault or a guest halted for good; 1 when hostvisor cannot go on; 2 for a "
      "usage error; 159 when a thread made a system call its seccomp filter forbids (--seccomp=kill).");
  cmd->callback([cmd, options, exit_status] {
    for (const char* name : {"--kernel", "--initrd", "--append", "--memory", "--disk", "--net", "--console", "--cpus",
                             "--debug-exit", "--balloon", "--share", "--firmware", "--cdrom"})
      if (cmd->count(name) > 0) options->machine_options_given.push_back(name);
    options->balloon_given = cmd->count("--balloon") > 0;
    options->accel_given = cmd->count("--accel") > 0;
    *exit_status = run(*options);
  });
}

}  // namespace hostvisor::cli
