// The API's HTTP/1.1 server on a unix socket (Boost.Beast). Each connection
// is served on a thread of its own, so a long request (a stop that waits for
// the guest, an exec) holds up only its own client. The socket is created
// 0600 under a temporary name and renamed into place, and every peer's uid
// is checked with SO_PEERCRED: only the daemon's own user gets in.
#pragma once

#include <memory>
#include <string>

#include "api/vm_service.h"
#include "base/result.h"

namespace hostvisor::api {

class ApiServer {
 public:
  static Result<std::unique_ptr<ApiServer>> listen(const std::string& socket_path, VmService& service);
  virtual ~ApiServer() = default;
  // Serves until SIGTERM or SIGINT; then removes the socket and returns.
  virtual Result<void> run() = 0;
};

}  // namespace hostvisor::api
