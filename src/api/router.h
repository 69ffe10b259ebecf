// The API's routes: a request's method, target and body in, a response out.
// Everything a client sends is parsed and checked here (names, JSON bodies,
// query parameters) before the VmService sees it; no exception escapes.
// Streams (events, the console WebSocket) are answered with a kind the HTTP
// server carries on with.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "api/vm_service.h"
#include "base/result.h"

namespace hostvisor::api {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, e.g. /v1/vms/dev/files?path=/etc/hostname
  std::string body;
};

struct ApiResponse {
  enum class Kind { kBody, kEventStream, kConsole, kExecStream };
  Kind kind = Kind::kBody;
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string vm;  // kConsole, kExecStream: which VM
  // More header fields of a plain answer (the web console's Set-Cookie, Location).
  std::vector<std::pair<std::string, std::string>> headers;
};

ApiResponse handle_request(VmService& service, const ApiRequest& request);

// The first message of the exec WebSocket: exec's body plus "terminal",
// "rows" and "cols".
Result<ExecStream> parse_exec_stream_request(const std::string& text);

// The JSON error body and status for an Error.
ApiResponse error_response(const Error& error);
ApiResponse error_response(unsigned status, const std::string& code, const std::string& message);

// The HTTP status of an error code, and the code's name in the API.
unsigned http_status(ErrorCode code);
const char* api_error_code(ErrorCode code);

}  // namespace hostvisor::api
