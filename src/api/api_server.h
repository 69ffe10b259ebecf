// The API's HTTP/1.1 server on a unix socket (Boost.Beast). Each connection
// is served on a thread of its own, so a long request (a stop that waits for
// the guest, an exec) holds up only its own client. The socket is created
// 0600 under a temporary name and renamed into place, and every peer's uid
// is checked with SO_PEERCRED: only the daemon's own user gets in.
// The web console's TCP listener (src/web/) serves its connections with the
// same code, under its own ConnectionOptions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/request_head.h"
#include "api/router.h"
#include "api/vm_service.h"
#include "base/result.h"

namespace hostvisor::api {

// Routes a server serves besides the router's: nothing answers the request
// on to the router.
using ExtraRoutes = std::function<std::optional<ApiResponse>(const RequestHead&, const ApiRequest&)>;

struct ConnectionOptions {
  uint64_t max_body = uint64_t{257} << 20;  // a file of 256 MiB and some room (the unix socket's)
  uint32_t max_header = 64 * 1024;
  uint64_t max_websocket_message = 16 << 20;
  // Called once a request's header is read: an answer here is sent instead,
  // the body is never read, and the connection closes.
  std::function<std::optional<ApiResponse>(const RequestHead&)> screen;
  ExtraRoutes extra_routes;
  // Added to every answer that is not a WebSocket.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Serves one connected stream socket (the connection takes `fd`) to its end,
// blocking the calling thread: HTTP requests, then maybe a stream or a
// WebSocket.
void serve_unix_connection(int fd, VmService& service, const ConnectionOptions& options);
void serve_tcp_connection(int fd, VmService& service, const ConnectionOptions& options);

class ApiServer {
 public:
  static Result<std::unique_ptr<ApiServer>> listen(const std::string& socket_path, VmService& service,
                                                   ExtraRoutes extra_routes = {});
  virtual ~ApiServer() = default;
  // Serves until SIGTERM or SIGINT; then removes the socket and returns.
  virtual Result<void> run() = 0;
};

}  // namespace hostvisor::api
