#include "web/web_console.h"

#include "web/page_files.h"
#include "web/web_request_policy.h"

namespace hostvisor::web {

using nlohmann::json;

namespace {

std::string address(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// A page a person reads in the browser: the console's own errors.
api::ApiResponse html_page(unsigned status, const std::string& title, const std::string& message) {
  api::ApiResponse response;
  response.status = status;
  response.content_type = "text/html; charset=utf-8";
  response.body =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hostvisor: " + html_escape(title) +
      "</title></head>\n<body><h1>" + html_escape(title) + "</h1>\n<p>" + html_escape(message) + "</p></body></html>\n";
  return response;
}

api::ApiResponse file_response(std::string content_type, std::string body) {
  api::ApiResponse response;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

std::optional<std::string_view> page_file(std::string_view name) {
  for (const PageFile& file : page_files())
    if (file.name == name) return file.data;
  return std::nullopt;
}

}  // namespace

WebConsole::WebConsole(api::VmService& service, uint16_t default_port, std::string share_root)
    : service_(service), default_port_(default_port), xterm_(std::move(share_root)) {}

std::optional<api::ApiResponse> WebConsole::unix_routes(const api::RequestHead& head, const api::ApiRequest& request) {
  const std::string_view path = target_path(request.target);
  if (path == "/v1/web") {
    if (request.method == "GET") {
      api::ApiResponse response;
      response.body = status().dump() + "\n";
      return response;
    }
    if (request.method != "POST")
      return api::error_response(405, "method-not-allowed", request.method + " is not allowed here; use GET or POST");
    std::optional<uint16_t> port;
    if (!request.body.empty()) {
      const json body = json::parse(request.body, nullptr, false);
      if (!body.is_object()) return api::error_response(400, "invalid-argument", "the body must be a JSON object");
      if (body.contains("port")) {
        if (!body["port"].is_number_unsigned() || body["port"].get<uint64_t>() > 65535)
          return api::error_response(400, "invalid-argument",
                                     "field 'port' must be a TCP port, 0 to 65535 (0: a free one)");
        port = body["port"].get<uint16_t>();
      }
    }
    auto opened = open(port);
    if (!opened) return api::error_response(opened.error());
    api::ApiResponse response;
    response.body = opened->dump() + "\n";
    return response;
  }
  if (path == "/v1/web/token") {
    if (request.method != "DELETE")
      return api::error_response(405, "method-not-allowed", request.method + " is not allowed here; use DELETE");
    revoke();
    api::ApiResponse response;
    response.status = 204;
    response.content_type.clear();
    return response;
  }
  if (path.starts_with("/v1/web/")) return api::error_response(404, "not-found", "no such API path: " + request.target);
  return std::nullopt;
}

json WebConsole::status() {
  std::lock_guard lock(mutex_);
  return {{"port", listener_ ? json(listener_->port()) : json(nullptr)}, {"token_issued", token_.issued()}};
}

Result<json> WebConsole::open(std::optional<uint16_t> port) {
  std::lock_guard lock(mutex_);
  if (!listener_ || (port && *port != 0 && *port != listener_->port())) {
    // A new port: the new listener first, so a port that is taken leaves
    // the console where it was.
    auto listener = HV_TRY(WebListener::open(port.value_or(default_port_), service_,
                                             [this](uint16_t bound) { return tcp_options(bound); }));
    // The page on the old port stops with it: no stream or console left
    // behind on a port nobody is told about any more.
    if (listener_) listener_->disconnect_all();
    listener_ = std::move(listener);
  }
  const std::string token = HV_TRY(token_.issue());
  const uint16_t bound = listener_->port();
  return json{{"url", "http://" + address(bound) + "/?token=" + token}, {"port", bound}};
}

void WebConsole::revoke() {
  std::lock_guard lock(mutex_);
  token_.revoke();
  // Streams and WebSockets opened with the token end with it.
  if (listener_) listener_->disconnect_all();
}

api::ConnectionOptions WebConsole::tcp_options(uint16_t port) {
  api::ConnectionOptions options;
  options.max_body = kMaxBody;
  options.max_header = kMaxHeader;
  options.max_websocket_message = kMaxBody;
  options.screen = [this, port](const api::RequestHead& head) { return screen(head, port); };
  options.extra_routes = [this](const api::RequestHead& head, const api::ApiRequest& request) {
    return page_routes(head, request);
  };
  const std::string self = "ws://127.0.0.1:" + std::to_string(port) + " ws://localhost:" + std::to_string(port);
  options.headers = {
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      // xterm.js writes <style> elements and style attributes, so inline
      // styles stay allowed; scripts come only from this origin.
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self' " +
           self + "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
  };
  return options;
}

std::optional<api::ApiResponse> WebConsole::screen(const api::RequestHead& head, uint16_t port) {
  const bool page = target_path(head.target) == "/";
  switch (screen_request(head, port, token_)) {
    case Screening::kPass: return std::nullopt;
    case Screening::kEnterWithToken: {
      // The token moves from the URL into a cookie the page's requests (and
      // WebSockets) carry, and the address bar loses it.
      api::ApiResponse response;
      response.status = 303;
      response.content_type.clear();
      const std::string token(*query_value(head.target, "token"));
      response.headers = {
          {"Location", "/"},
          {"Set-Cookie", token_cookie_name(port) + "=" + token + "; Path=/; HttpOnly; SameSite=Strict"}};
      return response;
    }
    case Screening::kBadHost:
      return api::error_response(403, "forbidden-host",
                                 "the Host must be " + address(port) + " or localhost:" + std::to_string(port) +
                                     ": the web console answers no other name (against DNS rebinding)");
    case Screening::kBadOrigin:
      return api::error_response(
          403, "forbidden-origin",
          "requests from another site's page are refused; the console's page is http://" + address(port) + "/");
    case Screening::kNoToken:
      if (page)
        return html_page(401, "The web console needs its token",
                         "Open the URL that `hostvisor web` prints: it carries the token.");
      return api::error_response(401, "unauthorized",
                                 "this needs the web console's token: open the URL `hostvisor web` prints, or send "
                                 "Authorization: Bearer TOKEN");
    case Screening::kBadToken:
      if (page)
        return html_page(401, "The web console's token is not valid",
                         "It is wrong, was revoked (hostvisor web --revoke), or belongs to a daemon that has "
                         "ended. Run `hostvisor web` for a new URL.");
      return api::error_response(401, "unauthorized",
                                 "the web console's token is wrong or was revoked: `hostvisor web` prints a new URL");
    case Screening::kUnixOnly:
      return api::error_response(403, "forbidden",
                                 "the web console's token is managed only on the daemon's unix socket (hostvisor web)");
  }
  return api::error_response(403, "forbidden", "refused");
}

std::optional<api::ApiResponse> WebConsole::page_routes(const api::RequestHead&, const api::ApiRequest& request) {
  const std::string_view path = target_path(request.target);
  if (path.starts_with("/v1/") || path == "/v1") return std::nullopt;  // the API's router
  if (request.method != "GET")
    return api::error_response(405, "method-not-allowed", request.method + " is not allowed here; use GET");
  if (path == "/") {
    // Without xterm.js the page cannot work: say so, and how to fix it.
    auto script = xterm_.script();
    if (!script) return html_page(503, "xterm.js is missing", script.error().message());
    return file_response("text/html; charset=utf-8", std::string(*page_file("index.html")));
  }
  if (path == "/static/app.js")
    return file_response("text/javascript; charset=utf-8", std::string(*page_file("app.js")));
  if (path == "/static/app.css") return file_response("text/css; charset=utf-8", std::string(*page_file("app.css")));
  if (path == "/static/xterm.js" || path == "/static/xterm.css") {
    auto file = path == "/static/xterm.js" ? xterm_.script() : xterm_.style();
    if (!file) return api::error_response(503, "not-installed", file.error().message());
    return file_response(file->content_type, std::move(file->body));
  }
  return api::error_response(404, "not-found", "no such page: " + std::string(path));
}

}  // namespace hostvisor::web
