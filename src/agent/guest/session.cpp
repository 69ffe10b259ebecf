#include "agent/guest/session.h"

#include <chrono>

#include "agent/guest/exec_session.h"
#include "agent/guest/file_transfer.h"
#include "agent/guest/system_info.h"
#include "agent/guest/system_control.h"

namespace hostvisor::agent::guest {
namespace {

using namespace std::chrono_literals;
using protocol::FrameChannel;

const char* const kOperations[] = {"ping", "info", "exec", "write_file", "read_file", "set_time", "shutdown", "reboot", "reseed_rng"};

// What a request's handler returns: nothing to add, or the error to reply with.
void answer(FrameChannel& channel, const Result<nlohmann::json>& outcome) {
  if (outcome.ok()) {
    reply_ok(channel, outcome.value());
  } else {
    reply_error(channel, outcome.error());
  }
}

}  // namespace

void reply_ok(FrameChannel& channel, nlohmann::json fields) {
  fields["ok"] = true;
  channel.send_json(fields);
}

void reply_error(FrameChannel& channel, const std::string& message, const std::string& code) {
  nlohmann::json reply = {{"ok", false}, {"error", message}};
  if (!code.empty()) reply["code"] = code;
  channel.send_json(reply);
}

void reply_error(FrameChannel& channel, const Error& error) {
  const char* code = error.code() == ErrorCode::kUnsupported ? "unsupported" : error.code() == ErrorCode::kNotFound ? "not_found" : "";
  reply_error(channel, error.message(), code);
}

void serve_connection(UniqueFd fd) {
  FrameChannel channel(std::move(fd));
  channel.send_json({{"agent", kAgentName},
                     {"version", kAgentVersion},
                     {"protocol", protocol::kProtocolVersion},
                     {"operations", kOperations}});
  auto request = channel.receive_json(60s);
  if (!request.ok()) return;  // the host went away or spoke garbage: nothing to answer
  const auto op = protocol::string_field(*request, "op", 64);
  if (!op.ok()) {
    reply_error(channel, op.error());
  } else if (*op == "ping") {
    reply_ok(channel);
  } else if (*op == "info") {
    answer(channel, collect_system_info());
  } else if (*op == "exec") {
    run_exec(channel, *request);  // replies and streams itself
  } else if (*op == "write_file") {
    receive_file(channel, *request);
  } else if (*op == "read_file") {
    send_file(channel, *request);
  } else if ((*op == "set_time" || *op == "shutdown" || *op == "reboot" || *op == "reseed_rng") &&
             !system_operations_enabled()) {
    reply_error(channel, *op + " is off in an agent serving a unix socket", "unsupported");
  } else if (*op == "set_time") {
    answer(channel, set_time(*request));
  } else if (*op == "shutdown" || *op == "reboot") {
    const bool reboot = *op == "reboot";
    reply_ok(channel);
    (void)channel.flush(5s);
    power_off_after_reply(reboot);
    return;
  } else if (*op == "reseed_rng") {
    answer(channel, reseed_rng(*request));
  } else {
    reply_error(channel, "unknown operation \"" + *op + "\"", "unsupported");
  }
  (void)channel.flush(30s);
}

}  // namespace hostvisor::agent::guest
