// The web console's screening (web/web_request_policy.h) on arbitrary
// headers: it never crashes, and it lets a request through only with the
// Host of the console, no foreign Origin and the token itself, in the cookie
// named for the port or a Bearer header, or in the page's URL.
// Input: a flags byte, then method, target, Host, Origin, Cookie and
// Authorization separated by newlines; "TOKEN" anywhere stands for the token.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "web/web_request_policy.h"

using namespace hostvisor;

namespace {
std::string with_token(std::string text, const std::string& token) {
  for (size_t at = text.find("TOKEN"); at != std::string::npos; at = text.find("TOKEN", at + token.size()))
    text.replace(at, 5, token);
  return text;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  static web::WebToken token;
  static const std::string secret = *token.issue();
  std::vector<std::string> fields;
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  for (size_t start = 0; fields.size() < 6;) {
    const size_t newline = rest.find('\n', start);
    fields.push_back(with_token(rest.substr(start, newline - start), secret));
    if (newline == std::string::npos) break;
    start = newline + 1;
  }
  fields.resize(6);
  const uint16_t port = (flags & 1) ? 80 : 8423;
  api::RequestHead head{.method = fields[0], .target = fields[1]};
  if (flags & 2) head.host = fields[2];
  if (flags & 4) head.origin = fields[3];
  head.ambiguous = flags & 8;
  head.cookie = fields[4];
  head.authorization = fields[5];

  const web::Screening verdict = web::screen_request(head, port, token);
  if (verdict == web::Screening::kPass || verdict == web::Screening::kEnterWithToken ||
      verdict == web::Screening::kUnixOnly) {
    // Nothing gets this far without the console's own Host, no foreign
    // Origin and the token.
    if (head.ambiguous || !head.host || !web::host_allowed(*head.host, port)) std::abort();
    if (head.origin && !web::origin_allowed(*head.origin, port)) std::abort();
    if (head.host->find(':') == std::string::npos && port != 80) std::abort();
    const bool has_token = head.target.find(secret) != std::string::npos ||
                           head.cookie.find(secret) != std::string::npos ||
                           head.authorization.find(secret) != std::string::npos;
    if (!has_token) std::abort();
  }
  if (verdict == web::Screening::kEnterWithToken && web::query_value(head.target, "token") != secret) std::abort();
  // The parsers on their own, on raw input.
  (void)web::cookie_value(rest, "a");
  (void)web::bearer_token(rest);
  (void)web::query_value(rest, "token");
  return 0;
}
