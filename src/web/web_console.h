// The web console: `hostvisor web` asks the daemon, over the unix socket
// (POST /v1/web), to serve a page on 127.0.0.1:PORT and for a URL with the
// token; the page then drives the same /v1 API over TCP, through the same
// router, each request screened first (web_request_policy.h): its Host and
// Origin must be the console's own address and it must carry the token.
// The token lives as long as the daemon, or until DELETE /v1/web/token
// (`hostvisor web --revoke`), which also ends every connection open over
// TCP (the events stream, console WebSockets).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/api_server.h"
#include "web/web_listener.h"
#include "web/web_token.h"
#include "web/xterm_assets.h"

namespace hostvisor::web {

class WebConsole {
 public:
  static constexpr uint16_t kDefaultPort = 8423;
  // Bodies the page sends are small JSON objects; anything larger is refused.
  static constexpr uint64_t kMaxBody = 64 * 1024;
  static constexpr uint32_t kMaxHeader = 16 * 1024;

  // default_port: where `hostvisor web` without --port serves the page;
  // share_root: where xterm.js is looked for (/usr/share).
  WebConsole(api::VmService& service, uint16_t default_port, std::string share_root);

  // The unix socket's routes: POST /v1/web ({"port": N} optional: listen
  // there (0: a free port unless it listens already), else where it listens
  // already, else on the default port; answers {"url", "port"}), GET
  // /v1/web and DELETE /v1/web/token. Nothing for any other request.
  std::optional<api::ApiResponse> unix_routes(const api::RequestHead& head, const api::ApiRequest& request);

 private:
  Result<nlohmann::json> open(std::optional<uint16_t> port);
  void revoke();
  nlohmann::json status();
  api::ConnectionOptions tcp_options(uint16_t port);
  std::optional<api::ApiResponse> screen(const api::RequestHead& head, uint16_t port);
  std::optional<api::ApiResponse> page_routes(const api::RequestHead& head, const api::ApiRequest& request);

  api::VmService& service_;
  const uint16_t default_port_;
  WebToken token_;
  XtermAssets xterm_;
  std::mutex mutex_;  // listener_, and a revoke against a new token
  std::unique_ptr<WebListener> listener_;
};

}  // namespace hostvisor::web
