#include "cli/web_command.h"

#include <cstdio>
#include <memory>
#include <optional>

#include "cli/api_client.h"

namespace hostvisor::cli {

namespace {

struct WebArgs {
  std::string socket;
  std::optional<uint16_t> port;
  bool revoke = false;
};

Result<void> web(const WebArgs& args) {
  ApiClient client(args.socket);
  if (args.revoke) {
    HV_TRY(client.call("DELETE", "/v1/web/token"));
    std::printf("revoked the web console's token: its URL no longer works; `hostvisor web` makes a new one\n");
    return ok();
  }
  nlohmann::json body = nlohmann::json::object();
  if (args.port) body["port"] = *args.port;
  const nlohmann::json answer = HV_TRY(client.call("POST", "/v1/web", body));
  if (!answer.contains("url") || !answer["url"].is_string())
    return Error(ErrorCode::kCorrupt, "the daemon's answer has no URL");
  std::printf("%s\n", answer["url"].get<std::string>().c_str());
  return ok();
}

}  // namespace

void add_web_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<WebArgs>();
  auto* cmd = app.add_subcommand(
      "web",
      "Print the URL of the web console: a page the daemon serves on 127.0.0.1 only (the VMs, their buttons, "
      "consoles and graphs). The URL carries a token that lasts as long as the daemon, or until --revoke");
  cmd->add_option("--port", args->port,
                  "Serve the console on this port of 127.0.0.1 (default: where it is served already, else the "
                  "daemon's --web-port, 8423); 0: a free one, if it is not served yet");
  cmd->add_flag("--revoke", args->revoke,
                "Revoke the token: its URL stops working; the next `hostvisor web` makes a new one");
  cmd->add_option("--api-socket", args->socket, "The daemon's API socket (default: the per-user one)");
  cmd->callback([args, exit_status] {
    auto outcome = web(*args);
    if (!outcome) {
      std::fprintf(stderr, "hostvisor: web: %s\n", outcome.error().message().c_str());
      *exit_status = outcome.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
      return;
    }
    *exit_status = 0;
  });
}

}  // namespace hostvisor::cli
