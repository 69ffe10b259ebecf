// The control protocol's operations on the VM of a `hostvisor run` (see
// docs/vm-control-protocol.md): the server hands each request here, and it
// runs on the current Machine's event loop thread (never a vCPU thread),
// where Ctrl-A's keys run too. A run may build several Machines (a guest
// reset reboots); between two, requests are refused as busy.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "control/control_server.h"
#include "vmm/console_output.h"
#include "vmm/machine.h"

namespace hostvisor::control {

// What the run knows that no Machine does.
struct RunFacts {
  bool headless = false;
  std::string restored_from;  // --restore DIR, if any
  // Refuses a snapshot directory the run may not write (the sandbox's
  // allow-list), before the VM is paused; unset: any.
  std::function<Result<void>(const std::string& dir)> check_snapshot_dir;
};

class VmController {
 public:
  VmController(std::shared_ptr<ConsoleOutput> output, RunFacts facts)
      : output_(std::move(output)), facts_(std::move(facts)) {}

  // The hooks for ControlServer::start().
  ServerHooks hooks();
  // Where state events go (set once the server runs).
  void set_server(ControlServer* server) { server_ = server; }

  // run_machines tells it when a machine runs and when it has ended
  // (`reason`: the outcome's line, or why the run goes on).
  void machine_running(Machine* machine, const std::string& reason);
  void machine_ended(const std::string& reason);

  // The event a subscriber gets first.
  json current_state();

 private:
  void handle(const Request& request, Reply reply);
  // On the loop thread.
  Result<json> run_op(Machine& machine, const Request& request);
  void publish_state(const std::string& state, const std::string& reason);

  std::shared_ptr<ConsoleOutput> output_;
  RunFacts facts_;
  ControlServer* server_ = nullptr;
  std::mutex mutex_;
  Machine* machine_ = nullptr;  // under mutex_: the machine running now
  bool stopping_ = false;       // under mutex_: the last machine has ended
};

}  // namespace hostvisor::control
