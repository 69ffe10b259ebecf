// The web console's TCP listener: 127.0.0.1 only, never another address.
// Each connection is served on a thread of its own by the API's connection
// code (api_server.h) under the options the console gives for this port; at
// most kMaxConnections at once, so no client can make the daemon start
// threads without bound.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "api/api_server.h"
#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::web {

class WebListener {
 public:
  static constexpr int kMaxConnections = 64;
  // port 0: a free port the kernel picks. `options_for` gets the port bound.
  static Result<std::unique_ptr<WebListener>> open(uint16_t port, api::VmService& service,
                                                   std::function<api::ConnectionOptions(uint16_t port)> options_for);
  // Stops accepting; connections being served run to their end.
  ~WebListener();
  uint16_t port() const { return port_; }

 private:
  WebListener(UniqueFd socket, UniqueFd stop, uint16_t port, api::VmService& service, api::ConnectionOptions options);
  void accept_loop();

  UniqueFd socket_;
  UniqueFd stop_;  // an eventfd: the destructor's word to the accepting thread
  uint16_t port_;
  api::VmService& service_;
  // Shared with the connections' threads, which may outlive this listener.
  std::shared_ptr<const api::ConnectionOptions> options_;
  std::shared_ptr<std::atomic<int>> connections_ = std::make_shared<std::atomic<int>>(0);
  std::thread thread_;
};

}  // namespace hostvisor::web
