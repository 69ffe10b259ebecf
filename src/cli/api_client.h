// The CLI's side of the daemon's API: HTTP/1.1 over the unix socket
// (Boost.Beast). The CLI reaches VMs only through it. When nothing answers
// on the default socket, the daemon is started (detached, logging to
// $XDG_DATA_HOME/hostvisor/daemon.log) and waited for.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"

namespace hostvisor::cli {

struct ApiReply {
  unsigned status = 0;
  std::string body;
};

class ApiClient {
 public:
  // socket_path empty: the default socket, starting the daemon if needed.
  explicit ApiClient(std::string socket_path) : socket_(std::move(socket_path)) {}

  Result<ApiReply> request(const std::string& method, const std::string& target, const std::string& body = "",
                           const std::string& content_type = "application/json");
  // A JSON call: a status of 400 or more becomes an Error with the API's message.
  Result<nlohmann::json> call(const std::string& method, const std::string& target,
                              const nlohmann::json& body = nullptr);
  // The socket (after starting the daemon if needed).
  Result<std::string> socket();

 private:
  Result<void> ensure_daemon();
  std::string socket_;
  bool checked_ = false;
};

// Percent-encodes a query value.
std::string url_encode(const std::string& text);

}  // namespace hostvisor::cli
