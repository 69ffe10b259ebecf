// A VmService that records each call as one line ("create_vm dev") and
// answers with an empty object, or with `fail_with` when set: what the
// router's tests and its fuzz target put behind the routes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api/vm_service.h"

namespace hostvisor::api::testing {

class RecordingService : public VmService {
 public:
  std::vector<std::string> calls;
  std::optional<Error> fail_with;

  Result<nlohmann::json> list_vms() override { return answer("list_vms"); }
  Result<nlohmann::json> create_vm(const daemon::VmConfig& config) override { return answer("create_vm " + config.name); }
  Result<nlohmann::json> get_vm(const std::string& name) override { return answer("get_vm " + name); }
  Result<nlohmann::json> update_vm(const std::string& name, const nlohmann::json&) override {
    return answer("update_vm " + name);
  }
  Result<void> delete_vm(const std::string& name, bool force) override {
    return done("delete_vm " + name + " " + std::to_string(force));
  }
  Result<nlohmann::json> act(const std::string& name, VmAction action, uint32_t timeout) override {
    return answer("act " + name + " " + std::to_string(static_cast<int>(action)) + " " + std::to_string(timeout));
  }
  Result<nlohmann::json> list_snapshots(const std::string& name) override { return answer("list_snapshots " + name); }
  Result<nlohmann::json> create_snapshot(const std::string& name, const std::string& snapshot) override {
    return answer("create_snapshot " + name + " " + snapshot);
  }
  Result<nlohmann::json> restore_snapshot(const std::string& name, const std::string& snapshot,
                                          bool verify) override {
    return answer("restore_snapshot " + name + " " + snapshot + (verify ? " verify" : ""));
  }
  Result<void> delete_snapshot(const std::string& name, const std::string& snapshot) override {
    return done("delete_snapshot " + name + " " + snapshot);
  }
  Result<nlohmann::json> clone_vm(const std::string& name, const std::string& new_name,
                                  const std::optional<std::string>& snapshot) override {
    return answer("clone_vm " + name + " " + new_name + " " + snapshot.value_or("-"));
  }
  Result<nlohmann::json> exec(const std::string& name, const ExecCall& call) override {
    return answer("exec " + name + " " + call.argv.at(0));
  }
  Result<nlohmann::json> exec_stream(const std::string& name, ExecStream& stream) override {
    return answer("exec_stream " + name + " " + stream.call.argv.at(0));
  }
  Result<std::string> read_file(const std::string& name, const std::string& path) override {
    calls.push_back("read_file " + name + " " + path);
    if (fail_with) return *fail_with;
    return std::string("contents");
  }
  Result<void> write_file(const std::string& name, const std::string& path, const std::string& data,
                          uint32_t mode) override {
    return done("write_file " + name + " " + path + " " + std::to_string(mode) + " " + std::to_string(data.size()));
  }
  Result<nlohmann::json> add_port_forward(const std::string& name, const PortForward& forward) override {
    return answer("add_port_forward " + name + " " + std::to_string(forward.host_port));
  }
  Result<void> remove_port_forward(const std::string& name, const PortForward& forward) override {
    return done("remove_port_forward " + name + " " + std::to_string(forward.host_port));
  }
  Result<nlohmann::json> set_balloon(const std::string& name, uint64_t bytes) override {
    return answer("set_balloon " + name + " " + std::to_string(bytes));
  }
  Result<nlohmann::json> balloon(const std::string& name) override { return answer("balloon " + name); }
  Result<nlohmann::json> metrics(const std::string& name) override { return answer("metrics " + name); }
  Result<nlohmann::json> list_networks() override { return answer("list_networks"); }
  Result<nlohmann::json> create_network(const std::string& name, const std::string& dhcp) override {
    return answer("create_network " + name + " " + dhcp);
  }
  Result<void> delete_network(const std::string& name) override { return done("delete_network " + name); }
  Result<std::string> read_log(const std::string& name, bool console) override {
    calls.push_back("read_log " + name + " " + std::to_string(console));
    if (fail_with) return *fail_with;
    return std::string("log");
  }
  EventBus& events() override { return events_; }
  Result<UniqueFd> attach_console(const std::string& name) override {
    calls.push_back("attach_console " + name);
    return Error(ErrorCode::kUnsupported, "no console here");
  }

 private:
  Result<nlohmann::json> answer(std::string call) {
    calls.push_back(std::move(call));
    if (fail_with) return *fail_with;
    return nlohmann::json::object();
  }
  Result<void> done(std::string call) {
    calls.push_back(std::move(call));
    if (fail_with) return *fail_with;
    return ok();
  }
  EventBus events_;
};

}  // namespace hostvisor::api::testing
