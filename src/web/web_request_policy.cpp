#include "web/web_request_policy.h"

namespace hostvisor::web {

namespace {

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::string token_cookie_name(uint16_t port) { return "hostvisor-web-" + std::to_string(port); }

bool host_allowed(std::string_view host, uint16_t port) {
  const std::string suffix = ":" + std::to_string(port);
  for (std::string_view name : {"127.0.0.1", "localhost"}) {
    if (equal_ignoring_case(host, std::string(name) + suffix)) return true;
    if (port == 80 && equal_ignoring_case(host, name)) return true;
  }
  return false;
}

bool origin_allowed(std::string_view origin, uint16_t port) {
  constexpr std::string_view kScheme = "http://";
  if (origin.size() <= kScheme.size() || !equal_ignoring_case(origin.substr(0, kScheme.size()), kScheme)) return false;
  return host_allowed(origin.substr(kScheme.size()), port);
}

std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semicolon = header.find(';');
    const std::string_view pair = trim(header.substr(0, semicolon));
    const size_t equals = pair.find('=');
    if (equals != std::string_view::npos && trim(pair.substr(0, equals)) == name) {
      std::string_view value = trim(pair.substr(equals + 1));
      // RFC 6265 allows the value in double quotes.
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      return value;
    }
    if (semicolon == std::string_view::npos) break;
    header.remove_prefix(semicolon + 1);
  }
  return std::nullopt;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  authorization = trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !equal_ignoring_case(authorization.substr(0, kScheme.size()), kScheme) ||
      (authorization[kScheme.size()] != ' ' && authorization[kScheme.size()] != '\t'))
    return std::nullopt;
  return trim(authorization.substr(kScheme.size()));
}

std::string_view target_path(std::string_view target) { return target.substr(0, target.find('?')); }

std::optional<std::string_view> query_value(std::string_view target, std::string_view key) {
  const size_t question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t equals = pair.find('=');
    if (pair.substr(0, equals) == key)
      return equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

Screening screen_request(const api::RequestHead& head, uint16_t port, const WebToken& token) {
  if (head.ambiguous || !head.host || !host_allowed(*head.host, port)) return Screening::kBadHost;
  if (head.origin && !origin_allowed(*head.origin, port)) return Screening::kBadOrigin;
  const std::string_view path = target_path(head.target);
  if (path == "/" && head.method == "GET") {
    if (auto candidate = query_value(head.target, "token"))
      return token.matches(*candidate) ? Screening::kEnterWithToken : Screening::kBadToken;
  }
  std::optional<std::string_view> candidate = bearer_token(head.authorization);
  if (!candidate) candidate = cookie_value(head.cookie, token_cookie_name(port));
  if (!candidate) return Screening::kNoToken;
  if (!token.matches(*candidate)) return Screening::kBadToken;
  if (path == "/v1/web" || path.starts_with("/v1/web/")) return Screening::kUnixOnly;
  return Screening::kPass;
}

}  // namespace hostvisor::web
