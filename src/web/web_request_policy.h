// The web console's rules for a request over TCP, decided on its header
// alone (before any body is read): the Host and Origin must name the
// console's own address (a page served from elsewhere, even one a rebound
// DNS name points at 127.0.0.1, names its own host), and the request must
// carry the token: in the cookie the first visit of `hostvisor web`'s URL
// sets, or as "Authorization: Bearer TOKEN". Every piece here parses
// untrusted bytes (fuzz/web_request.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/request_head.h"
#include "web/web_token.h"

namespace hostvisor::web {

enum class Screening {
  kPass,            // the token is good: on to the page and the API
  kEnterWithToken,  // GET /?token=TOKEN, the URL `hostvisor web` prints: set the cookie, go to /
  kBadHost,         // Host missing, repeated, or not 127.0.0.1:PORT / localhost:PORT
  kBadOrigin,       // an Origin (or a repeated one) other than http://127.0.0.1:PORT / http://localhost:PORT
  kNoToken,
  kBadToken,  // wrong, or revoked
  kUnixOnly,  // /v1/web: the token's own controls, only on the unix socket
};

Screening screen_request(const api::RequestHead& head, uint16_t port, const WebToken& token);

// The cookie that carries the token. Cookies are not kept apart by port, so
// its name has the port: two consoles on one host do not overwrite each
// other's.
std::string token_cookie_name(uint16_t port);

// "127.0.0.1:PORT" or "localhost:PORT" (the name in any case; without the
// port for port 80, as browsers send it).
bool host_allowed(std::string_view host, uint16_t port);
// "http://" and an allowed host.
bool origin_allowed(std::string_view origin, uint16_t port);
// The value of the first cookie called `name` in a Cookie header ("a=1; b=2").
std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name);
// TOKEN from "Bearer TOKEN" (the scheme in any case).
std::optional<std::string_view> bearer_token(std::string_view authorization);
// The value of `key` in the target's query ("/?token=abc"), as sent.
std::optional<std::string_view> query_value(std::string_view target, std::string_view key);
// The target without its query.
std::string_view target_path(std::string_view target);

}  // namespace hostvisor::web
