// The API's request handling (route, query and JSON body parsing, the VM
// config parser) on arbitrary requests: it never crashes or throws, every
// answer is a JSON object with a real status, an error carries a code and a
// message, and a request reaches the service only with names that are safe
// as path components.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "api/router.h"
#include "api/testing/recording_service.h"
#include "daemon/names.h"

using namespace hostvisor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"};
  if (size == 0) return 0;
  const std::string method = kMethods[data[0] % 8];
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t newline = rest.find('\n');
  api::ApiRequest request{.method = method,
                          .target = rest.substr(0, newline),
                          .body = newline == std::string::npos ? std::string() : rest.substr(newline + 1)};
  api::testing::RecordingService service;
  const api::ApiResponse response = api::handle_request(service, request);
  if (response.status < 200 || response.status > 599) std::abort();
  if (response.kind != api::ApiResponse::Kind::kBody) return 0;
  if (response.content_type == "application/json") {
    const nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    if (body.is_discarded()) std::abort();
    if (response.status >= 400) {
      if (!body.contains("error") || !body["error"]["code"].is_string() || !body["error"]["message"].is_string())
        std::abort();
      // An exception escaping a parser is a bug, not an answer.
      if (body["error"]["message"].get<std::string>().starts_with("internal error")) std::abort();
    }
  }
  // Every word of a recorded call after the call's name that is a VM name was checked.
  for (const std::string& call : service.calls) {
    const size_t space = call.find(' ');
    if (space == std::string::npos) continue;
    const std::string name = call.substr(space + 1, call.find(' ', space + 1) - space - 1);
    if (!daemon::check_name(name, "name")) std::abort();
  }
  return 0;
}
