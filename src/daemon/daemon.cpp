#include "daemon/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "agent/hostvisor_agent_client.h"
#include "base/log.h"
#include "block/image_copy.h"
#include "block/qcow2/image.h"
#include "control/control_client.h"
#include "daemon/atomic_file.h"
#include "daemon/names.h"
#include "net/switch/switch_paths.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::daemon {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// The hostvisor agent of one running VM, over its vsock socket.
class AgentAccess {
 public:
  explicit AgentAccess(const std::string& vsock, std::chrono::milliseconds timeout)
      : client_(agent::vsock_connector(vsock), timeout) {}
  agent::HostvisorAgentClient& client() { return client_; }

 private:
  agent::HostvisorAgentClient client_;
};

namespace {

constexpr size_t kMaxCapturedOutput = 16 << 20;   // per stream of an exec
constexpr size_t kMaxFileCopy = size_t{256} << 20;  // a file through the API

std::string now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

Result<json> read_json_file(const std::string& path) {
  auto text = hostvisor::read_file(path);
  if (!text) return Error(ErrorCode::kNotFound, path + " is missing");
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return Error(ErrorCode::kCorrupt, path + " is not a JSON object");
  return parsed;
}

std::vector<std::string> list_directory(const std::string& path) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Error not_running(const std::string& name) {
  return Error(ErrorCode::kBusy, "VM " + name + " is not running; start it first");
}

// A memfd holding `data`, read from the start: an agent call's input.
Result<UniqueFd> memfd_with(const std::string& data) {
  UniqueFd fd(::memfd_create("hostvisor-api", MFD_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("memfd_create");
  HV_TRY(write_fully(fd.get(), data));
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return Error::from_errno("lseek");
  return fd;
}

// The backing file a qcow2 image names (absolute), or "" (not qcow2, none).
std::string qcow2_backing(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  uint8_t header[20];
  if (::pread(fd.get(), header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) return "";
  if (header[0] != 'Q' || header[1] != 'F' || header[2] != 'I' || header[3] != 0xfb) return "";
  uint64_t offset = 0;
  for (int i = 8; i < 16; ++i) offset = offset << 8 | header[i];
  uint32_t size = 0;
  for (int i = 16; i < 20; ++i) size = size << 8 | header[i];
  if (offset == 0 || size == 0 || size > 4096) return "";
  std::string name(size, '\0');
  if (::pread(fd.get(), name.data(), size, static_cast<off_t>(offset)) != static_cast<ssize_t>(size)) return "";
  if (name[0] != '/') name = (fs::path(path).parent_path() / name).string();
  return fs::path(name).lexically_normal().string();
}

// The daemon's VM processes and switches get its own --seccomp.
std::string seccomp_argument() {
  return std::string("--seccomp=") + sandbox::seccomp_mode_name(sandbox::process_seccomp_mode());
}

bool is_inside(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

}  // namespace

Daemon::Daemon(LibraryPaths paths, std::string binary, std::string vm_binary, UniqueFd lock)
    : paths_(std::move(paths)), binary_(std::move(binary)), vm_binary_(std::move(vm_binary)), lock_(std::move(lock)) {}

Result<std::unique_ptr<Daemon>> Daemon::open(const LibraryPaths& paths, const std::string& hostvisor_binary,
                                             const std::string& vm_binary) {
  HV_TRY(create_library_directories(paths));
  const std::string lock_path = paths.data_dir + "/daemon.lock";
  UniqueFd lock = HV_TRY(open_file(lock_path, O_RDWR | O_CREAT, 0600));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return Error(ErrorCode::kBusy, "another hostvisor daemon already keeps the library " + paths.data_dir);
  // The holder's pid, for people and scripts that look for the daemon.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock.get(), 0) == 0) (void)::pwrite(lock.get(), pid.data(), pid.size(), 0);
  std::unique_ptr<Daemon> daemon(
      new Daemon(paths, hostvisor_binary, vm_binary.empty() ? hostvisor_binary : vm_binary, std::move(lock)));
  daemon->cleanup_interrupted();
  // VMs still running from before a restart: learn which are paused.
  for (const std::string& name : list_directory(paths.vms_dir())) {
    if (name.starts_with(".")) continue;
    auto state = daemon->load_state(name);
    if (!state || state->process.pid == 0) continue;
    if (!is_running(state->process)) {
      daemon->note_stopped(name, "ended while the daemon was away");
      continue;
    }
    auto info = control::control_call(daemon->control_socket(name), "info");
    if (info && info->value("state", "") == "paused") daemon->paused_.insert(name);
  }
  daemon->start_saved_networks();
  daemon->monitor_ = std::thread([d = daemon.get()] { d->monitor(); });
  return daemon;
}

Daemon::~Daemon() {
  stopping_ = true;
  if (monitor_.joinable()) monitor_.join();
}

void Daemon::cleanup_interrupted() {
  // A create or clone cut short leaves .NAME.tmp-PID; a delete cut short
  // leaves .NAME.deleting-PID. Neither is a VM: the operation did not happen
  // (create) or did (delete). This daemon holds the library's lock, so no
  // other daemon is mid-operation.
  for (const std::string& name : list_directory(paths_.vms_dir())) {
    if (!name.starts_with(".")) continue;
    HV_LOG_INFO("removing {} left by an interrupted operation", name);
    remove_tree(paths_.vms_dir() + "/" + name);
  }
  for (const std::string& name : list_directory(paths_.vms_dir())) {
    // state.json.tmp-PID and config.json.tmp-PID: a write cut short.
    for (const std::string& file : list_directory(paths_.vm_dir(name)))
      if (file.find(".json.tmp-") != std::string::npos) ::unlink((paths_.vm_dir(name) + "/" + file).c_str());
  }
  (void)sync_directory(paths_.vms_dir());
}

std::string Daemon::control_socket(const std::string& name) const {
  return paths_.vm_runtime_dir(name) + "/control.sock";
}
std::string Daemon::vsock_socket(const std::string& name) const { return paths_.vm_runtime_dir(name) + "/vsock.sock"; }

Result<VmConfig> Daemon::load_config(const std::string& name) const {
  auto json = read_json_file(paths_.vm_dir(name) + "/config.json");
  if (!json) {
    if (json.error().code() == ErrorCode::kNotFound)
      return Error(ErrorCode::kNotFound, "no VM named " + name + " (hostvisor vm list shows them)");
    return json.error();
  }
  auto config = vm_config_from_json(*json);
  if (!config) return config.error().with_context(paths_.vm_dir(name) + "/config.json");
  config->name = name;
  return config;
}

Result<void> Daemon::require_exists(const std::string& name) const {
  struct stat st{};
  if (::stat((paths_.vm_dir(name) + "/config.json").c_str(), &st) != 0)
    return Error(ErrorCode::kNotFound, "no VM named " + name + " (hostvisor vm list shows them)");
  return ok();
}

Result<Daemon::VmState> Daemon::load_state(const std::string& name) const {
  VmState state;
  auto json = read_json_file(paths_.vm_dir(name) + "/state.json");
  if (!json) return state;  // never started
  state.process.pid = json->value("pid", 0);
  state.process.start_time = json->value("start_time", uint64_t{0});
  state.resume = json->value("resume", "");
  state.resume_as_clone = json->value("resume_as_clone", false);
  state.suspended = json->value("suspended", false);
  if (json->contains("disks") && (*json)["disks"].is_array())
    for (const auto& disk : (*json)["disks"])
      if (disk.is_string()) state.disks.push_back(disk.get<std::string>());
  return state;
}

Result<void> Daemon::save_state(const std::string& name, const VmState& state) const {
  const json json{{"pid", state.process.pid},     {"start_time", state.process.start_time},
                  {"resume", state.resume},       {"resume_as_clone", state.resume_as_clone},
                  {"suspended", state.suspended}, {"disks", state.disks}};
  return write_file_atomically(paths_.vm_dir(name) + "/state.json", json.dump() + "\n");
}

std::shared_ptr<std::mutex> Daemon::vm_lock(const std::string& name) {
  std::lock_guard lock(locks_mutex_);
  auto& entry = vm_locks_[name];
  if (!entry) entry = std::make_shared<std::mutex>();
  return entry;
}

std::string Daemon::run_state(const std::string& name, const VmState& state) {
  if (state.process.pid != 0 && is_running(state.process)) {
    std::lock_guard lock(paused_mutex_);
    return paused_.contains(name) ? "paused" : "running";
  }
  return state.suspended && !state.resume.empty() ? "suspended" : "stopped";
}

json Daemon::describe(const VmConfig& config, const VmState& state, const std::string& run_state) const {
  json vm = vm_config_to_json(config);
  vm["state"] = run_state;
  vm["pid"] = run_state == "running" || run_state == "paused" ? json(state.process.pid) : json(nullptr);
  vm["resume"] = state.resume.empty() ? json(nullptr) : json(fs::path(state.resume).filename().string());
  vm["directory"] = paths_.vm_dir(config.name);
  if (vm["pid"].is_number()) {
    vm["control_socket"] = control_socket(config.name);
    vm["vsock_socket"] = vsock_socket(config.name);
  }
  vm["log"] = paths_.vm_dir(config.name) + "/logs/hostvisor.log";
  vm["console_log"] = paths_.vm_dir(config.name) + "/logs/console.log";
  return vm;
}

Result<json> Daemon::list_vms() {
  json vms = json::array();
  for (const std::string& name : list_directory(paths_.vms_dir())) {
    if (name.starts_with(".")) continue;
    auto config = load_config(name);
    if (!config) continue;  // vanished meanwhile, or not ours
    const VmState state = HV_TRY(load_state(name));
    vms.push_back(describe(*config, state, run_state(name, state)));
  }
  return vms;
}

Result<json> Daemon::get_vm(const std::string& name) {
  const VmConfig config = HV_TRY(load_config(name));
  const VmState state = HV_TRY(load_state(name));
  return describe(config, state, run_state(name, state));
}

Result<json> Daemon::create_vm(const VmConfig& requested) {
  VmConfig config = requested;
  auto guard = vm_lock(config.name);
  std::lock_guard lock(*guard);
  if (require_exists(config.name)) return Error(ErrorCode::kBusy, "a VM named " + config.name + " already exists");
  config.created = now_iso8601();
  const std::string temp = paths_.vms_dir() + "/." + config.name + ".tmp-" + std::to_string(::getpid());
  remove_tree(temp);
  auto build = [&]() -> Result<void> {
    for (const char* dir : {"", "/disks", "/logs", "/snapshots"})
      if (::mkdir((temp + dir).c_str(), 0700) != 0) return Error::from_errno("mkdir " + temp + dir);
    if (config.data_disk_bytes > 0) {
      HV_TRY(block::Qcow2Image::create(temp + "/disks/data.qcow2",
                                       block::Qcow2CreateOptions{.size = config.data_disk_bytes}));
      config.disks.push_back(VmDisk{.path = "disks/data.qcow2", .format = "qcow2", .serial = kDataDiskSerial});
    }
    HV_TRY(write_file_atomically(temp + "/config.json", vm_config_to_json(config).dump(2) + "\n"));
    HV_TRY(write_file_atomically(temp + "/state.json", json{{"pid", 0}, {"start_time", 0}}.dump() + "\n"));
    HV_TRY(sync_directory(temp + "/disks"));
    return sync_directory(temp);
  };
  if (auto built = build(); !built) {
    remove_tree(temp);
    return built.error().with_context("create VM " + config.name);
  }
  // The rename is the create: before it there is no VM, after it a whole one.
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, paths_.vm_dir(config.name).c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    remove_tree(temp);
    if (err == EEXIST) return Error(ErrorCode::kBusy, "a VM named " + config.name + " already exists");
    return Error::from_errno("create VM " + config.name, err);
  }
  HV_TRY(sync_directory(paths_.vms_dir()));
  events_.publish({{"type", "vm-created"}, {"vm", config.name}});
  return describe(config, VmState{}, "stopped");
}

Result<json> Daemon::update_vm(const std::string& name, const json& update) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  VmConfig config = HV_TRY(load_config(name));
  const VmState state = HV_TRY(load_state(name));
  const std::string current = run_state(name, state);
  if (current != "stopped")
    return Error(ErrorCode::kBusy, "VM " + name + " is " + current + "; stop it before changing its settings");
  HV_TRY(apply_vm_update(config, update));
  HV_TRY(write_file_atomically(paths_.vm_dir(name) + "/config.json", vm_config_to_json(config).dump(2) + "\n"));
  events_.publish({{"type", "vm-updated"}, {"vm", name}});
  return describe(config, state, current);
}

Result<void> Daemon::delete_vm(const std::string& name, bool force) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  HV_TRY(require_exists(name));
  const VmState state = HV_TRY(load_state(name));
  if (is_running(state.process)) {
    if (!force) return Error(ErrorCode::kBusy, "VM " + name + " is running; stop it first, or delete with force");
    HV_TRY(stop_locked(name, true, 0));
  }
  HV_TRY(check_unreferenced(paths_.vm_dir(name)));
  const std::string doomed = paths_.vms_dir() + "/." + name + ".deleting-" + std::to_string(::getpid());
  if (::rename(paths_.vm_dir(name).c_str(), doomed.c_str()) != 0) return Error::from_errno("delete VM " + name);
  HV_TRY(sync_directory(paths_.vms_dir()));
  remove_tree(doomed);
  remove_tree(paths_.vm_runtime_dir(name));
  {
    std::lock_guard paused(paused_mutex_);
    paused_.erase(name);
  }
  events_.publish({{"type", "vm-deleted"}, {"vm", name}});
  return ok();
}

Result<Daemon::VmState> Daemon::require_running(const std::string& name) {
  HV_TRY(require_exists(name));
  VmState state = HV_TRY(load_state(name));
  if (!is_running(state.process)) return not_running(name);
  return state;
}

void Daemon::publish_state(const std::string& name, const std::string& state, const std::string& reason) {
  json event{{"type", "vm-state"}, {"vm", name}, {"state", state}};
  if (!reason.empty()) event["reason"] = reason;
  events_.publish(std::move(event));
}

Result<void> Daemon::start_locked(const std::string& name, bool verify_restore) {
  const VmConfig config = HV_TRY(load_config(name));
  VmState state = HV_TRY(load_state(name));
  if (is_running(state.process)) return Error(ErrorCode::kBusy, "VM " + name + " is already running");
  const std::string dir = paths_.vm_dir(name);
  const std::string runtime = paths_.vm_runtime_dir(name);
  HV_TRY(net::ensure_private_directory(runtime));
  ::unlink(control_socket(name).c_str());
  ::unlink(vsock_socket(name).c_str());
  std::vector<std::string> args{"run",           "--headless", "--control", control_socket(name), "--console-log",
                                dir + "/logs/console.log", "--accel", config.accel, "--vsock",
                                "cid=3,uds=" + vsock_socket(name), seccomp_argument(),
                                // The sandboxed VM writes its snapshots (and
                                // suspends) beneath its own directory.
                                "--sandbox-write", dir,
                                // The API adds port forwards to a running VM,
                                // on ports not known at its start.
                                "--sandbox-bind", "any"};
  const bool restoring = !state.resume.empty();
  if (restoring) {
    args.insert(args.end(), {"--restore", state.resume});
    if (state.resume_as_clone) args.emplace_back("--clone");
    if (verify_restore) args.emplace_back("--verify");
  } else {
    VmConfig boot = config;
    // After a restore the VM wrote to overlays: a later boot goes on from them.
    if (state.disks.size() == boot.disks.size())
      for (size_t i = 0; i < boot.disks.size(); ++i)
        if (!boot.disks[i].readonly && !state.disks[i].empty())
          boot.disks[i] = VmDisk{.path = state.disks[i], .format = "", .serial = boot.disks[i].serial};
    auto boot_args = boot_arguments(boot, dir);
    args.insert(args.end(), boot_args.begin(), boot_args.end());
  }
  const std::string log = dir + "/logs/hostvisor.log";
  {
    // A line per start in the log, so a reader can tell the runs apart.
    UniqueFd fd = HV_TRY(open_file(log, O_WRONLY | O_CREAT | O_APPEND, 0600));
    std::string line = "--- " + now_iso8601() + " hostvisor";
    for (const std::string& arg : args) line += " " + arg;
    (void)write_fully(fd.get(), line + "\n");
  }
  state.process = HV_TRY(spawn_detached(vm_binary_, args, log));
  HV_TRY(save_state(name, state));
  // Up once its control socket answers.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  Result<json> info = Error(ErrorCode::kIo, "");
  for (;;) {
    info = control::control_call(control_socket(name), "info");
    if (info) break;
    reap_if_child(state.process.pid);
    if (!is_running(state.process)) {
      note_stopped(name, "failed to start");
      const std::string tail = log_tail(log);
      return Error(ErrorCode::kIo, "VM " + name + " did not start: " + (tail.empty() ? "see " + log : tail));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(state.process.pid, SIGKILL);
      return Error(ErrorCode::kIo, "VM " + name + " did not open its control socket within 120 s; see " + log);
    }
    std::this_thread::sleep_for(5ms);
  }
  state.disks.clear();
  if (info->contains("disks") && (*info)["disks"].is_array())
    for (const auto& disk : (*info)["disks"]) state.disks.push_back(disk.value("path", ""));
  if (restoring) {
    state.resume.clear();
    state.resume_as_clone = false;
    state.suspended = false;
  }
  HV_TRY(save_state(name, state));
  {
    std::lock_guard paused(paused_mutex_);
    if (info->value("state", "") == "paused")
      paused_.insert(name);
    else
      paused_.erase(name);
  }
  publish_state(name, "running", restoring ? "restored" : "booted");
  return ok();
}

void Daemon::wait_for_exit(const ProcessIdentity& process, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    reap_if_child(process.pid);
    if (!is_running(process)) return;
    std::this_thread::sleep_for(10ms);
  }
}

Result<void> Daemon::stop_locked(const std::string& name, bool force, uint32_t timeout_seconds) {
  const VmState state = HV_TRY(load_state(name));
  if (!is_running(state.process)) return not_running(name);
  if (!force) {
    // The power button, for any guest that handles it (the default guest's
    // acpid does); and the hostvisor agent's shutdown, for one that runs the
    // agent but ignores the button. Either way the guest powers off itself.
    (void)control::control_call(control_socket(name), "powerdown");
    AgentAccess agent(vsock_socket(name), 2s);
    (void)agent.client().shutdown();
    wait_for_exit(state.process, std::chrono::seconds(timeout_seconds));
  }
  if (is_running(state.process)) {
    ::kill(state.process.pid, SIGKILL);
    wait_for_exit(state.process, 10s);
  }
  if (is_running(state.process)) return Error(ErrorCode::kIo, "VM " + name + " did not end after SIGKILL");
  note_stopped(name, force ? "killed" : "stopped");
  return ok();
}

void Daemon::note_stopped(const std::string& name, const std::string& reason) {
  auto state = load_state(name);
  if (!state) return;
  if (state->process.pid != 0) {
    state->process = {};
    (void)save_state(name, *state);
  }
  {
    std::lock_guard paused(paused_mutex_);
    paused_.erase(name);
  }
  ::unlink(control_socket(name).c_str());
  // A snapshot the VM process was writing when it died stays a temporary
  // directory (the writer renames only a whole one into place): remove it.
  for (const std::string& dir : {paths_.vm_dir(name), paths_.vm_dir(name) + "/snapshots"})
    for (const std::string& entry : list_directory(dir))
      if (entry.starts_with(".") && entry.find(".tmp-") != std::string::npos) remove_tree(dir + "/" + entry);
  publish_state(name, state->suspended && !state->resume.empty() ? "suspended" : "stopped", reason);
}

Result<json> Daemon::snapshot_locked(const std::string& name, const std::string& dir, bool quit) {
  const VmState state = HV_TRY(require_running(name));
  // virtio-fs keeps what the guest has open in the share as this VM
  // process's descriptors, which no snapshot can carry to another process.
  if (const VmConfig config = HV_TRY(load_config(name)); !config.shares.empty()) {
    std::string tags;
    for (const VmShare& share : config.shares) tags += (tags.empty() ? "" : ", ") + share.tag;
    return Error(ErrorCode::kBusy, "VM " + name + " has shared folders (" + tags + ") and cannot be " +
                                       (quit ? "suspended" : "snapshotted") +
                                       ": a share's state is the VM process's open files. Stop it instead, or "
                                       "remove its shares while it is stopped (PATCH /v1/vms/" + name + " {\"shares\": []})");
  }
  auto client = HV_TRY(control::ControlClient::connect(control_socket(name)));
  auto result = client.call("snapshot", json{{"dir", dir}, {"quit", quit}});
  if (!result) {
    reap_if_child(state.process.pid);
    if (!is_running(state.process)) {
      note_stopped(name, "the VM process ended during a snapshot");
      return Error(ErrorCode::kIo, "VM " + name + " ended during the snapshot; no snapshot was kept (see its log)");
    }
  }
  return result;
}

Result<json> Daemon::act(const std::string& name, api::VmAction action, uint32_t stop_timeout_seconds) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  HV_TRY(require_exists(name));
  switch (action) {
    case api::VmAction::kStart:
      HV_TRY(start_locked(name));
      break;
    case api::VmAction::kStop:
      HV_TRY(stop_locked(name, false, stop_timeout_seconds));
      break;
    case api::VmAction::kKill:
      HV_TRY(stop_locked(name, true, 0));
      break;
    case api::VmAction::kPause:
    case api::VmAction::kResume: {
      HV_TRY(require_running(name));
      const bool pause = action == api::VmAction::kPause;
      HV_TRY(control::control_call(control_socket(name), pause ? "pause" : "resume"));
      {
        std::lock_guard paused(paused_mutex_);
        if (pause)
          paused_.insert(name);
        else
          paused_.erase(name);
      }
      publish_state(name, pause ? "paused" : "running", pause ? "pause" : "resume");
      break;
    }
    case api::VmAction::kReset:
      HV_TRY(require_running(name));
      HV_TRY(control::control_call(control_socket(name), "reset"));
      publish_state(name, "running", "reset");
      break;
    case api::VmAction::kSuspend: {
      VmState state = HV_TRY(require_running(name));
      const std::string dir = paths_.vm_dir(name) + "/suspended";
      HV_TRY(snapshot_locked(name, dir, true));
      wait_for_exit(state.process, 30s);
      if (is_running(state.process)) ::kill(state.process.pid, SIGKILL);
      wait_for_exit(state.process, 10s);
      state = HV_TRY(load_state(name));
      state.process = {};
      state.resume = dir;
      state.resume_as_clone = false;
      state.suspended = true;
      HV_TRY(save_state(name, state));
      note_stopped(name, "suspended");
      break;
    }
  }
  return get_vm(name);
}

Result<json> Daemon::list_snapshots(const std::string& name) {
  HV_TRY(require_exists(name));
  json snapshots = json::array();
  const std::string dir = paths_.vm_dir(name) + "/snapshots";
  for (const std::string& entry : list_directory(dir)) {
    if (entry.starts_with(".") || !check_name(entry, "snapshot")) continue;
    struct stat st{};
    if (::stat((dir + "/" + entry + "/header").c_str(), &st) != 0) continue;  // not a snapshot
    uint64_t bytes = 0;
    std::error_code ec;
    for (const auto& file : fs::directory_iterator(dir + "/" + entry, ec))
      if (file.is_regular_file(ec)) bytes += file.file_size(ec);
    char created[32];
    std::tm utc{};
    ::gmtime_r(&st.st_mtime, &utc);
    std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &utc);
    snapshots.push_back({{"name", entry}, {"created", created}, {"bytes", bytes}});
  }
  return snapshots;
}

Result<json> Daemon::create_snapshot(const std::string& name, const std::string& snapshot) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  HV_TRY(require_exists(name));
  const std::string dir = paths_.vm_dir(name) + "/snapshots/" + snapshot;
  if (::access(dir.c_str(), F_OK) == 0)
    return Error(ErrorCode::kBusy, "VM " + name + " already has a snapshot named " + snapshot + "; delete it first");
  HV_TRY(require_running(name));
  json result = HV_TRY(snapshot_locked(name, dir, false));
  result["name"] = snapshot;
  events_.publish({{"type", "snapshot-created"}, {"vm", name}, {"snapshot", snapshot}});
  return result;
}

Result<json> Daemon::restore_snapshot(const std::string& name, const std::string& snapshot, bool verify) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  HV_TRY(require_exists(name));
  const std::string dir = paths_.vm_dir(name) + "/snapshots/" + snapshot;
  // The VM process checks the snapshot through and through when it restores it.
  if (::access((dir + "/header").c_str(), F_OK) != 0)
    return Error(ErrorCode::kNotFound, "VM " + name + " has no snapshot named " + snapshot);
  VmState state = HV_TRY(load_state(name));
  if (is_running(state.process)) HV_TRY(stop_locked(name, true, 0));
  state = HV_TRY(load_state(name));
  state.resume = dir;
  state.resume_as_clone = false;
  state.suspended = false;
  HV_TRY(save_state(name, state));
  HV_TRY(start_locked(name, verify));
  return get_vm(name);
}

Result<void> Daemon::check_unreferenced(const std::string& dir) const {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(paths_.vms_dir(), ec); it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file(ec)) continue;
    const std::string path = it->path().string();
    if (is_inside(path, dir)) continue;
    const std::string backing = qcow2_backing(path);
    if (!backing.empty() && is_inside(backing, dir))
      return Error(ErrorCode::kBusy, "disk image " + path + " is built on " + backing +
                                         "; delete what uses it first (a later snapshot, a clone, or the VM's own "
                                         "disk after a restore)");
  }
  return ok();
}

Result<void> Daemon::delete_snapshot(const std::string& name, const std::string& snapshot) {
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  HV_TRY(require_exists(name));
  const std::string snapshots = paths_.vm_dir(name) + "/snapshots";
  const std::string dir = snapshots + "/" + snapshot;
  if (::access((dir + "/header").c_str(), F_OK) != 0)
    return Error(ErrorCode::kNotFound, "VM " + name + " has no snapshot named " + snapshot);
  // Overlays of earlier runs restored from it that nothing uses any more.
  const VmState state = HV_TRY(load_state(name));
  for (const std::string& file : list_directory(snapshots)) {
    if (!file.starts_with(snapshot + ".run-")) continue;
    const std::string path = snapshots + "/" + file;
    if (std::find(state.disks.begin(), state.disks.end(), path) == state.disks.end()) ::unlink(path.c_str());
  }
  HV_TRY(check_unreferenced(dir));
  const std::string doomed = snapshots + "/." + snapshot + ".deleting-" + std::to_string(::getpid());
  if (::rename(dir.c_str(), doomed.c_str()) != 0) return Error::from_errno("delete snapshot " + snapshot);
  HV_TRY(sync_directory(snapshots));
  remove_tree(doomed);
  events_.publish({{"type", "snapshot-deleted"}, {"vm", name}, {"snapshot", snapshot}});
  return ok();
}

Result<json> Daemon::clone_vm(const std::string& name, const std::string& new_name,
                              const std::optional<std::string>& snapshot) {
  if (new_name == name) return Error(ErrorCode::kBusy, "a VM named " + new_name + " already exists");
  std::optional<std::string> from = snapshot;
  {
    // A running VM is cloned from a snapshot of it, taken now.
    HV_TRY(require_exists(name));
    const VmState state = HV_TRY(load_state(name));
    if (!from && is_running(state.process)) {
      std::string auto_name = ("clone-" + new_name).substr(0, 63);
      while (auto_name.ends_with("-")) auto_name.pop_back();
      if (::access((paths_.vm_dir(name) + "/snapshots/" + auto_name).c_str(), F_OK) == 0)
        return Error(ErrorCode::kBusy, "VM " + name + " already has a snapshot " + auto_name +
                                           "; clone from it with --snapshot " + auto_name + " or delete it");
      HV_TRY(create_snapshot(name, auto_name));
      from = auto_name;
    }
  }
  auto source_guard = vm_lock(name);
  auto target_guard = vm_lock(new_name);
  std::scoped_lock lock(*source_guard, *target_guard);
  VmConfig config = HV_TRY(load_config(name));
  const VmState source_state = HV_TRY(load_state(name));
  if (require_exists(new_name)) return Error(ErrorCode::kBusy, "a VM named " + new_name + " already exists");
  config.name = new_name;
  config.created = now_iso8601();
  const std::string source_dir = paths_.vm_dir(name);
  const std::string final_dir = paths_.vm_dir(new_name);
  const std::string temp = paths_.vms_dir() + "/." + new_name + ".tmp-" + std::to_string(::getpid());
  remove_tree(temp);
  VmState state;
  auto build = [&]() -> Result<void> {
    for (const char* dir : {"", "/disks", "/logs", "/snapshots"})
      if (::mkdir((temp + dir).c_str(), 0700) != 0) return Error::from_errno("mkdir " + temp + dir);
    if (from) {
      const std::string source = source_dir + "/snapshots/" + *from;
      if (::access((source + "/header").c_str(), F_OK) != 0)
        return Error(ErrorCode::kNotFound, "VM " + name + " has no snapshot named " + *from);
      // The snapshot's files are read-only once written: the clone links
      // them instead of copying.
      const std::string copy = temp + "/snapshots/" + *from;
      if (::mkdir(copy.c_str(), 0700) != 0) return Error::from_errno("mkdir " + copy);
      for (const std::string& file : list_directory(source)) {
        const std::string from_path = source + "/" + file, to_path = copy + "/" + file;
        if (::link(from_path.c_str(), to_path.c_str()) != 0) {
          std::error_code ec;
          fs::copy_file(from_path, to_path, ec);
          if (ec) return Error(ErrorCode::kIo, "copy " + from_path + ": " + ec.message());
        }
      }
      HV_TRY(sync_directory(copy));
      state.resume = final_dir + "/snapshots/" + *from;
      state.resume_as_clone = true;
    } else {
      // A stopped VM: each writable disk flattened into an image of the clone's own.
      for (size_t i = 0; i < config.disks.size(); ++i) {
        VmDisk& disk = config.disks[i];
        if (disk.readonly) continue;
        std::string source = disk.path[0] == '/' ? disk.path : source_dir + "/" + disk.path;
        if (source_state.disks.size() == config.disks.size() && !source_state.disks[i].empty())
          source = source_state.disks[i];
        const std::string relative = "disks/" + (is_inside(source, source_dir + "/disks")
                                                     ? fs::path(source).filename().string()
                                                     : "disk" + std::to_string(i) + ".qcow2");
        HV_TRY(block::convert_image(source, temp + "/" + relative, block::ConvertOptions{}));
        disk = VmDisk{.path = relative, .format = "qcow2"};
      }
      HV_TRY(sync_directory(temp + "/disks"));
    }
    HV_TRY(write_file_atomically(temp + "/config.json", vm_config_to_json(config).dump(2) + "\n"));
    const json json{{"pid", 0},
                    {"start_time", 0},
                    {"resume", state.resume},
                    {"resume_as_clone", state.resume_as_clone},
                    {"suspended", false},
                    {"disks", json::array()}};
    HV_TRY(write_file_atomically(temp + "/state.json", json.dump() + "\n"));
    return sync_directory(temp);
  };
  if (auto built = build(); !built) {
    remove_tree(temp);
    return built.error().with_context("clone " + name + " as " + new_name);
  }
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    remove_tree(temp);
    if (err == EEXIST) return Error(ErrorCode::kBusy, "a VM named " + new_name + " already exists");
    return Error::from_errno("clone " + name, err);
  }
  HV_TRY(sync_directory(paths_.vms_dir()));
  events_.publish({{"type", "vm-created"}, {"vm", new_name}, {"clone_of", name}});
  return describe(config, state, state.resume.empty() ? "stopped" : "suspended");
}

Result<std::unique_ptr<AgentAccess>> Daemon::agent_for(const std::string& name) {
  HV_TRY(require_running(name));
  return std::make_unique<AgentAccess>(vsock_socket(name), 30s);
}

Result<json> Daemon::exec(const std::string& name, const api::ExecCall& call) {
  HV_TRY(require_running(name));
  AgentAccess agent(vsock_socket(name), std::chrono::seconds(call.timeout_seconds));
  agent::ExecRequest request{.argv = call.argv, .env = call.env, .cwd = call.cwd};
  UniqueFd input = HV_TRY(memfd_with(call.stdin_data));
  std::string out, err;
  bool truncated = false;
  auto capture = [&](std::string& into) {
    return [&into, &truncated](std::span<const uint8_t> bytes) {
      const size_t room = kMaxCapturedOutput - std::min(kMaxCapturedOutput, into.size());
      if (bytes.size() > room) truncated = true;
      into.append(reinterpret_cast<const char*>(bytes.data()), std::min(room, bytes.size()));
    };
  };
  agent::ExecStreams streams{.stdin_fd = input.get(), .on_stdout = capture(out), .on_stderr = capture(err)};
  auto result = agent.client().exec(request, streams);
  if (!result) return result.error().with_context("exec in VM " + name);
  return json{{"exit_code", result->exit_code}, {"signal", result->signal}, {"status", result->status()},
              {"stdout", out}, {"stderr", err}, {"truncated", truncated}};
}

Result<json> Daemon::exec_stream(const std::string& name, api::ExecStream& stream) {
  HV_TRY(require_running(name));
  AgentAccess agent(vsock_socket(name), std::chrono::seconds(stream.call.timeout_seconds));
  agent::ExecRequest request{.argv = stream.call.argv,
                             .env = stream.call.env,
                             .cwd = stream.call.cwd,
                             .terminal = stream.terminal,
                             .rows = stream.rows,
                             .cols = stream.cols};
  agent::ExecStreams streams{
      .stdin_fd = stream.stdin_fd,
      .on_stdout = [&](std::span<const uint8_t> bytes) { stream.on_output(1, bytes); },
      .on_stderr = [&](std::span<const uint8_t> bytes) { stream.on_output(2, bytes); },
      .event_fd = stream.event_fd,
      .on_event = stream.on_event};
  auto result = agent.client().exec(request, streams);
  if (!result) return result.error().with_context("exec in VM " + name);
  return json{{"exit_code", result->exit_code}, {"signal", result->signal}, {"status", result->status()}};
}

Result<std::string> Daemon::read_file(const std::string& name, const std::string& guest_path) {
  auto agent = HV_TRY(agent_for(name));
  UniqueFd sink(::memfd_create("hostvisor-copy", MFD_CLOEXEC));
  if (!sink.valid()) return Error::from_errno("memfd_create");
  const agent::FileAttributes attributes = HV_TRY(agent->client().read_file(guest_path, sink.get()));
  if (attributes.size > kMaxFileCopy)
    return Error(ErrorCode::kOutOfRange, guest_path + " is larger than the API's 256 MiB copy limit");
  struct stat st{};
  if (::fstat(sink.get(), &st) != 0) return Error::from_errno("fstat");
  if (static_cast<uint64_t>(st.st_size) > kMaxFileCopy)
    return Error(ErrorCode::kOutOfRange, guest_path + " is larger than the API's 256 MiB copy limit");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  if (::pread(sink.get(), data.data(), data.size(), 0) != static_cast<ssize_t>(data.size()))
    return Error::from_errno("read back " + guest_path);
  return data;
}

Result<void> Daemon::write_file(const std::string& name, const std::string& guest_path, const std::string& data,
                                uint32_t mode) {
  auto agent = HV_TRY(agent_for(name));
  UniqueFd source = HV_TRY(memfd_with(data));
  agent::FileAttributes attributes;
  attributes.mode = mode;
  attributes.mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  return agent->client().write_file(guest_path, source.get(), attributes);
}

Result<json> Daemon::add_port_forward(const std::string& name, const api::PortForward& forward) {
  HV_TRY(require_running(name));
  const json args{{"nic", forward.nic},         {"proto", forward.proto},           {"host_addr", forward.host_addr},
                  {"host_port", forward.host_port}, {"guest_addr", forward.guest_addr}, {"guest_port", forward.guest_port}};
  HV_TRY(control::control_call(control_socket(name), "hostfwd-add", args));
  // The next boot forwards it too.
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  VmConfig config = HV_TRY(load_config(name));
  HV_TRY(add_net_forward(config, forward.nic,
                         forward.proto + ":" + forward.host_addr + ":" + std::to_string(forward.host_port) + "-" +
                             forward.guest_addr + ":" + std::to_string(forward.guest_port)));
  HV_TRY(write_file_atomically(paths_.vm_dir(name) + "/config.json", vm_config_to_json(config).dump(2) + "\n"));
  return args;
}

Result<void> Daemon::remove_port_forward(const std::string& name, const api::PortForward& forward) {
  HV_TRY(require_running(name));
  HV_TRY(control::control_call(control_socket(name), "hostfwd-remove",
                               {{"nic", forward.nic},
                                {"proto", forward.proto},
                                {"host_addr", forward.host_addr},
                                {"host_port", forward.host_port}}));
  auto guard = vm_lock(name);
  std::lock_guard lock(*guard);
  VmConfig config = HV_TRY(load_config(name));
  if (remove_net_forward(config, forward.nic, forward.proto, forward.host_addr, forward.host_port))
    HV_TRY(write_file_atomically(paths_.vm_dir(name) + "/config.json", vm_config_to_json(config).dump(2) + "\n"));
  return ok();
}

Result<json> Daemon::set_balloon(const std::string& name, uint64_t bytes) {
  HV_TRY(require_running(name));
  HV_TRY(control::control_call(control_socket(name), "balloon-set", {{"bytes", bytes}}));
  return control::control_call(control_socket(name), "balloon");
}

Result<json> Daemon::balloon(const std::string& name) {
  HV_TRY(require_running(name));
  return control::control_call(control_socket(name), "balloon");
}

Result<json> Daemon::metrics(const std::string& name) {
  HV_TRY(require_running(name));
  return control::control_call(control_socket(name), "metrics");
}

Result<std::string> Daemon::read_log(const std::string& name, bool console) {
  HV_TRY(require_exists(name));
  const std::string path = paths_.vm_dir(name) + (console ? "/logs/console.log" : "/logs/hostvisor.log");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::string();  // never started: an empty log
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno("fstat " + path);
  constexpr off_t kMaxLog = 1 << 20;
  const off_t start = st.st_size > kMaxLog ? st.st_size - kMaxLog : 0;
  std::string text(static_cast<size_t>(st.st_size - start), '\0');
  const ssize_t n = ::pread(fd.get(), text.data(), text.size(), start);
  if (n < 0) return Error::from_errno("read " + path);
  text.resize(static_cast<size_t>(n));
  return text;
}

Result<UniqueFd> Daemon::attach_console(const std::string& name) {
  HV_TRY(require_running(name));
  auto client = HV_TRY(control::ControlClient::connect(control_socket(name)));
  return client.attach_console(true);
}

// Networks: networks/NAME.json records a network and the switch process the
// daemon runs for it (`hostvisor switch NAME`); VMs join with
// --net internal,name=NAME.
Result<json> Daemon::list_networks() {
  std::lock_guard lock(networks_mutex_);
  json networks = json::array();
  for (const std::string& file : list_directory(paths_.networks_dir())) {
    if (!file.ends_with(".json") || file.starts_with(".")) continue;
    auto record = read_json_file(paths_.networks_dir() + "/" + file);
    if (!record) continue;
    const ProcessIdentity process{.pid = record->value("pid", 0), .start_time = record->value("start_time", uint64_t{0})};
    const std::string name = record->value("name", "");
    auto socket = net::switch_paths(name);
    networks.push_back({{"name", name},
                        {"dhcp", record->value("dhcp", "")},
                        {"created", record->value("created", "")},
                        {"running", is_running(process)},
                        {"socket", socket ? socket->socket : ""},
                        {"net_option", "internal,name=" + name}});
  }
  return networks;
}

Result<json> Daemon::create_network(const std::string& name, const std::string& dhcp) {
  std::lock_guard lock(networks_mutex_);
  const std::string path = paths_.networks_dir() + "/" + name + ".json";
  if (::access(path.c_str(), F_OK) == 0) return Error(ErrorCode::kBusy, "a network named " + name + " already exists");
  json record{{"name", name}, {"dhcp", dhcp}, {"created", now_iso8601()}, {"pid", 0}, {"start_time", 0}};
  std::vector<std::string> args{"switch", name, seccomp_argument()};
  if (!dhcp.empty()) args.insert(args.end(), {"--dhcp", dhcp});
  const std::string log = paths_.networks_dir() + "/" + name + ".log";
  const ProcessIdentity process = HV_TRY(spawn_detached(binary_, args, log));
  // A bad --dhcp ends the switch at once; say so instead of recording it.
  std::this_thread::sleep_for(100ms);
  reap_if_child(process.pid);
  if (!is_running(process)) {
    const std::string tail = log_tail(log);
    ::unlink(log.c_str());
    return Error(ErrorCode::kInvalidArgument, "network " + name + ": " + (tail.empty() ? "its switch ended" : tail));
  }
  record["pid"] = process.pid;
  record["start_time"] = process.start_time;
  HV_TRY(write_file_atomically(path, record.dump() + "\n"));
  events_.publish({{"type", "network-created"}, {"network", name}});
  return json{{"name", name}, {"dhcp", dhcp}, {"running", true}, {"net_option", "internal,name=" + name}};
}

Result<void> Daemon::delete_network(const std::string& name) {
  std::lock_guard lock(networks_mutex_);
  const std::string path = paths_.networks_dir() + "/" + name + ".json";
  auto record = read_json_file(path);
  if (!record) return Error(ErrorCode::kNotFound, "no network named " + name);
  for (const std::string& vm : list_directory(paths_.vms_dir())) {
    if (vm.starts_with(".")) continue;
    auto config = load_config(vm);
    if (!config) continue;
    for (const std::string& net : config->nets)
      if (net.starts_with("internal,") && (net.find(",name=" + name + ",") != std::string::npos ||
                                           net.ends_with(",name=" + name)))
        return Error(ErrorCode::kBusy, "VM " + vm + " uses network " + name + "; change or delete it first");
  }
  const ProcessIdentity process{.pid = record->value("pid", 0), .start_time = record->value("start_time", uint64_t{0})};
  if (is_running(process)) {
    ::kill(process.pid, SIGTERM);
    wait_for_exit(process, 5s);
    if (is_running(process)) ::kill(process.pid, SIGKILL);
    reap_if_child(process.pid);
  }
  if (::unlink(path.c_str()) != 0) return Error::from_errno("delete network " + name);
  ::unlink((paths_.networks_dir() + "/" + name + ".log").c_str());
  (void)sync_directory(paths_.networks_dir());
  events_.publish({{"type", "network-deleted"}, {"network", name}});
  return ok();
}

void Daemon::start_saved_networks() {
  std::lock_guard lock(networks_mutex_);
  for (const std::string& file : list_directory(paths_.networks_dir())) {
    if (!file.ends_with(".json") || file.starts_with(".")) continue;
    if (file.find(".json.tmp-") != std::string::npos) continue;
    const std::string path = paths_.networks_dir() + "/" + file;
    auto record = read_json_file(path);
    if (!record) continue;
    const ProcessIdentity process{.pid = record->value("pid", 0), .start_time = record->value("start_time", uint64_t{0})};
    if (is_running(process)) continue;
    const std::string name = record->value("name", "");
    if (!check_name(name, "network name")) continue;
    std::vector<std::string> args{"switch", name, seccomp_argument()};
    if (!record->value("dhcp", "").empty()) args.insert(args.end(), {"--dhcp", record->value("dhcp", "")});
    auto started = spawn_detached(binary_, args, paths_.networks_dir() + "/" + name + ".log");
    if (!started) continue;
    (*record)["pid"] = started->pid;
    (*record)["start_time"] = started->start_time;
    (void)write_file_atomically(path, record->dump() + "\n");
  }
}

void Daemon::monitor() {
  // VM processes end on their own (the guest powers off, crashes, a kill -9
  // from outside): notice, reap our children, and tell subscribers.
  while (!stopping_) {
    std::this_thread::sleep_for(200ms);
    for (const std::string& name : list_directory(paths_.vms_dir())) {
      if (name.starts_with(".")) continue;
      auto state = load_state(name);
      if (!state || state->process.pid == 0) continue;
      reap_if_child(state->process.pid);
      if (is_running(state->process)) continue;
      auto guard = vm_lock(name);
      std::unique_lock lock(*guard, std::try_to_lock);
      if (!lock.owns_lock()) continue;  // an operation on it is under way and will see
      auto again = load_state(name);
      if (again && again->process.pid != 0 && !is_running(again->process)) note_stopped(name, "the VM process ended");
    }
  }
}

}  // namespace hostvisor::daemon
