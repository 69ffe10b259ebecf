// What the HTTP server knows of a request once its header is read and before
// its body is: what a connection's screen (the web console's Host, Origin and
// token checks) decides on, so a refused request's body is never read.
#pragma once

#include <optional>
#include <string>

namespace hostvisor::api {

struct RequestHead {
  std::string method;
  std::string target;
  std::optional<std::string> host;    // absent, or the one Host field
  std::optional<std::string> origin;  // absent, or the one Origin field
  // Host or Origin came more than once: no single answer to check.
  bool ambiguous = false;
  std::string cookie;         // the Cookie fields, joined by "; "
  std::string authorization;  // the Authorization field, "" if absent
};

}  // namespace hostvisor::api
