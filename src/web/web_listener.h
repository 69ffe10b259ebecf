// The web console's TCP listener: 127.0.0.1 only, never another address.
// Each connection is served on a thread of its own by the API's connection
// code (api_server.h) under the options the console gives for this port; at
// most kMaxConnections at once, so no client can make the daemon start
// threads without bound.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
  // Ends every open connection (shutdown of its socket wakes whatever waits
  // on it: a request being read, the events stream, a console WebSocket):
  // what a revoked token was good for does not outlive it.
  void disconnect_all();

 private:
  WebListener(UniqueFd socket, UniqueFd stop, uint16_t port, api::VmService& service, api::ConnectionOptions options);
  void accept_loop();
  void serve(int fd);

  UniqueFd socket_;
  UniqueFd stop_;  // an eventfd: the destructor's word to the accepting thread
  uint16_t port_;
  api::VmService& service_;
  // Shared with the connections' threads, which may outlive this listener.
  std::shared_ptr<const api::ConnectionOptions> options_;
  // The open connections, each by a duplicate of its socket's fd that this
  // side owns (so a shutdown never meets an fd number reused meanwhile).
  // Shared with the connections' threads, which may outlive this listener.
  struct Connections {
    std::mutex mutex;
    uint64_t next_id = 0;
    std::map<uint64_t, UniqueFd> open;
  };
  std::shared_ptr<Connections> connections_ = std::make_shared<Connections>();
  std::thread thread_;
};

}  // namespace hostvisor::web
