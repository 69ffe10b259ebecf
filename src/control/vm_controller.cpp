#include "control/vm_controller.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include "devices/virtio/balloon/virtio_balloon_spec.h"
#include "net/host_forward.h"
#include "net/ipv4_address.h"

namespace hostvisor::control {

namespace {

const char* state_name(RunState state) {
  switch (state) {
    case RunState::kRunning: return "running";
    case RunState::kPaused: return "paused";
    case RunState::kStopped: return "stopping";
  }
  return "stopping";
}

// The guest's statistics by the names Linux gives them.
constexpr const char* kBalloonStatNames[virtio_balloon::kStatTagCount] = {
    "swap_in",          "swap_out",     "major_faults",        "minor_faults",     "free_memory", "total_memory",
    "available_memory", "disk_caches",  "hugetlb_allocations", "hugetlb_failures", "oom_kills",   "alloc_stalls",
    "async_scans",      "direct_scans", "async_reclaims",      "direct_reclaims"};

json balloon_json(const BalloonStatus& status) {
  json stats = json::object();
  for (uint16_t tag = 0; tag < virtio_balloon::kStatTagCount; ++tag)
    if (status.stats.has(tag)) stats[kBalloonStatNames[tag]] = status.stats.value[tag];
  return {{"target_bytes", uint64_t{status.target_pages} << virtio_balloon::kPfnShift},
          {"actual_bytes", uint64_t{status.actual_pages} << virtio_balloon::kPfnShift},
          {"driver_ready", status.driver_ready},
          {"discarded_bytes", status.discarded_bytes},
          {"reported_bytes", status.reported_bytes},
          {"ring_bytes_kept", status.ring_bytes_kept},
          {"stats", std::move(stats)}};
}

Result<uint16_t> port_arg(const json& args, const char* name) {
  const uint64_t port = HV_TRY(uint_arg(args, name));
  if (port == 0 || port > 65535)
    return Error(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" must be a port from 1 to 65535");
  return static_cast<uint16_t>(port);
}

// hostfwd-add's and hostfwd-remove's arguments; `with_guest` for add.
Result<std::pair<unsigned, net::HostForward>> forward_args(const json& args, bool with_guest) {
  const uint64_t nic = HV_TRY(uint_arg(args, "nic", 0));
  if (nic > 255) return Error(ErrorCode::kInvalidArgument, "\"nic\" " + std::to_string(nic) + ": no such NIC");
  net::HostForward forward;
  const std::string proto = HV_TRY(string_arg(args, "proto", "tcp"));
  if (proto == "tcp")
    forward.protocol = net::ForwardProtocol::kTcp;
  else if (proto == "udp")
    forward.protocol = net::ForwardProtocol::kUdp;
  else
    return Error(ErrorCode::kInvalidArgument, "\"proto\" " + proto + ": must be tcp or udp");
  const std::string host_addr = HV_TRY(string_arg(args, "host_addr", ""));
  if (!host_addr.empty()) {
    auto address = net::parse_ipv4_address(host_addr);
    if (!address) return Error(ErrorCode::kInvalidArgument, "\"host_addr\" " + host_addr + ": not an IPv4 address");
    forward.host_address = *address;
  }
  forward.host_port = HV_TRY(port_arg(args, "host_port"));
  if (with_guest) {
    const std::string guest_addr = HV_TRY(string_arg(args, "guest_addr", ""));
    if (!guest_addr.empty()) {
      auto address = net::parse_ipv4_address(guest_addr);
      if (!address) return Error(ErrorCode::kInvalidArgument, "\"guest_addr\" " + guest_addr + ": not an IPv4 address");
      forward.guest_address = *address;
    }
    forward.guest_port = HV_TRY(port_arg(args, "guest_port"));
  }
  return std::pair{static_cast<unsigned>(nic), forward};
}

json info_json(Machine& machine, const RunFacts& facts) {
  const MachineConfig& config = machine.config();
  json nics = json::array();
  const std::vector<NicInfo> nic_infos = machine.nics();
  for (size_t i = 0; i < nic_infos.size(); ++i)
    nics.push_back({{"index", i}, {"kind", nic_infos[i].kind}, {"mac", nic_infos[i].mac}});
  json disks = json::array();
  const std::vector<DiskInfo> disk_infos = machine.disks();
  for (size_t i = 0; i < disk_infos.size(); ++i)
    disks.push_back({{"index", i},
                     {"path", disk_infos[i].path},
                     {"format", disk_infos[i].format},
                     {"read_only", disk_infos[i].read_only}});
  json info = {{"state", state_name(machine.state())},
               {"pid", ::getpid()},
               {"accel", machine.backend_name()},
               {"cpus", config.cpus},
               {"memory_bytes", config.memory_bytes},
               {"console", config.console == ConsoleDevice::kVirtio ? "virtio" : "serial"},
               {"headless", facts.headless},
               {"nics", std::move(nics)},
               {"disks", std::move(disks)}};
  if (!machine.vsock_socket().empty()) info["vsock_socket"] = machine.vsock_socket();
  if (!machine.snapshot_dir().empty()) info["snapshot_dir"] = machine.snapshot_dir();
  if (!facts.restored_from.empty()) info["restored_from"] = facts.restored_from;
  return info;
}

json metrics_json(const MachineMetrics& metrics) {
  json vcpus = json::array();
  for (const VcpuExitCounts& vcpu : metrics.vcpus)
    vcpus.push_back({{"exits", vcpu.exits}, {"io_exits", vcpu.io_exits}, {"mmio_exits", vcpu.mmio_exits}});
  json disks = json::array();
  for (const auto& disk : metrics.disks)
    disks.push_back({{"read_ops", disk.read_ops},
                     {"write_ops", disk.write_ops},
                     {"read_bytes", disk.read_bytes},
                     {"write_bytes", disk.write_bytes},
                     {"flush_ops", disk.flush_ops}});
  json nics = json::array();
  for (const auto& nic : metrics.nics)
    nics.push_back({{"rx_packets", nic.rx_packets},
                    {"tx_packets", nic.tx_packets},
                    {"rx_bytes", nic.rx_bytes},
                    {"tx_bytes", nic.tx_bytes},
                    {"rx_dropped", nic.rx_dropped},
                    {"tx_dropped", nic.tx_dropped}});
  json result = {{"vcpus", std::move(vcpus)},
                 {"disks", std::move(disks)},
                 {"nics", std::move(nics)},
                 {"memory", {{"guest_bytes", metrics.guest_bytes}, {"host_rss_bytes", metrics.host_rss_bytes}}}};
  if (metrics.balloon) result["balloon"] = balloon_json(*metrics.balloon);
  // The whole process's CPU time (vCPUs, devices, I/O): what the web
  // console's CPU graph plots, as a share of wall time.
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) == 0) {
    const auto ns = [](const timeval& t) { return uint64_t(t.tv_sec) * 1000000000 + uint64_t(t.tv_usec) * 1000; };
    result["cpu"] = {{"user_ns", ns(usage.ru_utime)}, {"system_ns", ns(usage.ru_stime)}};
  }
  return result;
}

// A RunResponse as a request's answer.
Result<void> lifecycle_answer(RunResponse response, const char* what) {
  switch (response) {
    case RunResponse::kDone:
    case RunResponse::kUnchanged: return ok();
    case RunResponse::kStopped: return Error(ErrorCode::kBusy, std::string("cannot ") + what + ": the VM is stopping");
    case RunResponse::kSuperseded:
      return Error(ErrorCode::kBusy, std::string("cannot ") + what + ": a resume came meanwhile; ask again");
  }
  return ok();
}

}  // namespace

ServerHooks VmController::hooks() {
  ServerHooks hooks;
  hooks.handle = [this](const Request& request, Reply reply) { handle(request, std::move(reply)); };
  hooks.current_state = [this] { return current_state(); };
  hooks.attach_console = [this](std::function<void(std::span<const uint8_t>)> sink, bool replay) {
    return output_->attach(std::move(sink), replay);
  };
  hooks.detach_console = [this](uint64_t id) { output_->detach(id); };
  hooks.console_input = [this](std::span<const uint8_t> bytes) {
    std::lock_guard lock(mutex_);
    if (!machine_) return;  // between two machines (a reboot) typing goes nowhere
    machine_->post([machine = machine_, input = std::vector<uint8_t>(bytes.begin(), bytes.end())] {
      machine->console_input(input);
    });
  };
  return hooks;
}

json VmController::current_state() {
  std::lock_guard lock(mutex_);
  const char* state = machine_ ? state_name(machine_->state()) : (stopping_ ? "stopping" : "starting");
  return {{"event", "state"}, {"state", state}};
}

void VmController::publish_state(const std::string& state, const std::string& reason) {
  if (server_) server_->publish({{"event", "state"}, {"state", state}, {"reason", reason}});
}

void VmController::machine_running(Machine* machine, const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    machine_ = machine;
    stopping_ = false;
  }
  publish_state("running", reason);
}

void VmController::machine_ended(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    machine_ = nullptr;
    stopping_ = true;
  }
  publish_state("stopping", reason);
}

void VmController::handle(const Request& request, Reply reply) {
  std::lock_guard lock(mutex_);
  if (!machine_) {
    reply(Error(ErrorCode::kBusy, stopping_ ? "the VM is stopping" : "the VM is starting; ask again in a moment"));
    return;
  }
  if (request.op == "quit") {
    // Not through the loop: a quit must work even when the loop is stuck.
    machine_->request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit through the control socket"});
    reply(json::object());
    return;
  }
  // The machine outlives every task posted to its loop (the loop stops
  // before the machine goes, and a task that never ran answers busy).
  machine_->post([this, machine = machine_, request, reply = std::move(reply)] {
    auto result = run_op(*machine, request);
    reply(std::move(result));
  });
}

Result<json> VmController::run_op(Machine& machine, const Request& request) {
  const std::string& op = request.op;
  const json& args = request.args;
  if (op == "info") return info_json(machine, facts_);
  if (op == "pause") {
    const RunResponse response = machine.pause();
    HV_TRY(lifecycle_answer(response, "pause"));
    if (response == RunResponse::kDone) publish_state("paused", "pause");
    return json{{"state", "paused"}};
  }
  if (op == "resume") {
    const RunResponse response = machine.resume_and_sync();
    HV_TRY(lifecycle_answer(response, "resume"));
    if (response == RunResponse::kDone) publish_state("running", "resume");
    return json{{"state", "running"}};
  }
  if (op == "reset") {
    machine.request_reset();
    return json::object();
  }
  if (op == "powerdown") {
    // A paused guest cannot hear the button.
    if (machine.state() == RunState::kPaused && machine.resume_and_sync() == RunResponse::kDone)
      publish_state("running", "powerdown");
    machine.press_power_button();
    return json::object();
  }
  if (op == "snapshot") {
    const std::string dir = HV_TRY(string_arg(args, "dir"));
    if (dir.empty()) return Error(ErrorCode::kInvalidArgument, "\"dir\" must name a directory");
    const bool quit = HV_TRY(bool_arg(args, "quit", false));
    const std::string absolute = std::filesystem::absolute(dir).lexically_normal().string();
    if (facts_.check_snapshot_dir) HV_TRY(facts_.check_snapshot_dir(absolute));
    auto saved = machine.save_snapshot(absolute);
    if (!saved) {
      const Error& error = saved.error();
      return Error(error.code() == ErrorCode::kBusy ? ErrorCode::kBusy : ErrorCode::kIo,
                   "snapshot to " + absolute + ": " + error.message());
    }
    if (quit)
      machine.request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "suspended: snapshot written to " + absolute});
    return json{{"dir", absolute},
                {"bytes", saved->memory_data_bytes + saved->state_bytes},
                {"millis", static_cast<uint64_t>(saved->seconds * 1000 + 0.5)}};
  }
  if (op == "hostfwd-add" || op == "hostfwd-remove") {
    const bool add = op == "hostfwd-add";
    const auto [nic, forward] = HV_TRY(forward_args(args, add));
    auto done = add ? machine.add_host_forward(nic, forward) : machine.remove_host_forward(nic, forward);
    if (!done) {
      // A taken port or a forward that is not there: tried, and failed.
      const ErrorCode code = done.error().code();
      if (code == ErrorCode::kBusy || code == ErrorCode::kNotFound)
        return Error(ErrorCode::kIo, done.error().message());
      return std::move(done).error();
    }
    return json::object();
  }
  if (op == "balloon-set") {
    const uint64_t bytes = HV_TRY(uint_arg(args, "bytes"));
    HV_TRY(machine.set_balloon_size(bytes));
    return json::object();
  }
  if (op == "balloon") {
    auto status = machine.balloon_status();
    if (!status) return Error(ErrorCode::kUnsupported, "this VM has no balloon: start it with --balloon");
    return balloon_json(*status);
  }
  if (op == "metrics") return metrics_json(machine.metrics());
  return Error(ErrorCode::kInvalidArgument,
               "unknown op \"" + op +
                   "\" (ops: info, pause, resume, reset, powerdown, quit, snapshot, hostfwd-add, hostfwd-remove, "
                   "balloon-set, balloon, metrics, console, subscribe)");
}

}  // namespace hostvisor::control
