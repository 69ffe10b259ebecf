// How the host reaches an agent: a connector opens a fresh stream to it for
// each request (the hostvisor agent serves one request per connection).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "agent/agent_client.h"
#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::agent {

using AgentConnector = std::function<Result<UniqueFd>()>;

// Through a VM's virtio-vsock unix socket (`--vsock cid=N,uds=PATH`): connect
// to PATH, write "CONNECT <port>\n", expect "OK <hostport>\n".
AgentConnector vsock_connector(std::string uds_path, uint32_t port = kAgentVsockPort);

// Straight to an agent serving a unix socket (`hostvisor-agent --listen unix:PATH`).
AgentConnector unix_connector(std::string path);

// Connects a stream unix socket to path (the fd is blocking).
Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace hostvisor::agent
