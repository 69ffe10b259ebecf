#include "api/router.h"

#include <charconv>
#include <map>
#include <string_view>
#include <vector>

#include "daemon/names.h"

namespace hostvisor::api {

using nlohmann::json;

namespace {

// Bodies are dumped with invalid UTF-8 replaced (guest output is bytes).
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiResponse json_response(unsigned status, const json& body) {
  ApiResponse response;
  response.status = status;
  response.body = dump(body) + "\n";
  return response;
}

ApiResponse no_content() {
  ApiResponse response;
  response.status = 204;
  response.content_type.clear();
  return response;
}

template <typename T>
ApiResponse from_result(Result<T> result, unsigned status = 200) {
  if (!result) return error_response(result.error());
  if constexpr (std::is_same_v<T, void>) {
    return no_content();
  } else {
    return json_response(status, result.value());
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%') {
      if (i + 2 >= text.size()) return Error(ErrorCode::kInvalidArgument, "a '%' escape in the URL is cut short");
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return Error(ErrorCode::kInvalidArgument, "a '%' escape in the URL is not two hex digits");
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (text[i] == '+') {
      out += ' ';
    } else {
      out += text[i];
    }
  }
  return out;
}

struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

Result<Target> parse_target(const std::string& target) {
  if (target.empty() || target[0] != '/') return Error(ErrorCode::kInvalidArgument, "the request target must be a path");
  if (target.size() > 8192) return Error(ErrorCode::kInvalidArgument, "the request target is longer than 8 KiB");
  const size_t question = target.find('?');
  const std::string_view path = std::string_view(target).substr(0, question);
  Target parsed;
  size_t start = 1;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const std::string_view raw = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!raw.empty()) parsed.segments.push_back(HV_TRY(percent_decode(raw)));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (question != std::string::npos) {
    std::string_view query = std::string_view(target).substr(question + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      const size_t equals = pair.find('=');
      const std::string key = HV_TRY(percent_decode(pair.substr(0, equals)));
      const std::string value =
          equals == std::string_view::npos ? std::string() : HV_TRY(percent_decode(pair.substr(equals + 1)));
      if (!key.empty()) parsed.query[key] = value;
      if (amp == std::string_view::npos) break;
      query = query.substr(amp + 1);
    }
  }
  return parsed;
}

Result<json> parse_body(const std::string& body, bool required) {
  if (body.empty()) {
    if (required) return Error(ErrorCode::kInvalidArgument, "this request needs a JSON object as its body");
    return json::object();
  }
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return Error(ErrorCode::kInvalidArgument, "the body is not valid JSON");
  if (!parsed.is_object()) return Error(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  return parsed;
}

Result<std::string> name_field(const json& body, const char* field, std::string_view what) {
  if (!body.contains(field) || !body[field].is_string())
    return Error(ErrorCode::kInvalidArgument, std::string("field '") + field + "' (a string) is required");
  std::string name = body[field].get<std::string>();
  HV_TRY(daemon::check_name(name, what));
  return name;
}

Result<uint64_t> unsigned_field(const json& body, const char* field, uint64_t fallback, uint64_t max) {
  if (!body.contains(field)) return fallback;
  if (!body[field].is_number_integer() || body[field].get<int64_t>() < 0 || body[field].get<uint64_t>() > max)
    return Error(ErrorCode::kInvalidArgument,
                 std::string("field '") + field + "' must be a whole number up to " + std::to_string(max));
  return body[field].get<uint64_t>();
}

Result<std::vector<std::string>> string_list(const json& body, const char* field, size_t max_items) {
  std::vector<std::string> items;
  if (!body.contains(field)) return items;
  if (!body[field].is_array() || body[field].size() > max_items)
    return Error(ErrorCode::kInvalidArgument,
                 std::string("field '") + field + "' must be a list of at most " + std::to_string(max_items) + " strings");
  for (const json& item : body[field]) {
    if (!item.is_string()) return Error(ErrorCode::kInvalidArgument, std::string("field '") + field + "' holds a non-string");
    items.push_back(item.get<std::string>());
  }
  return items;
}

Result<ExecCall> parse_exec(const json& body) {
  ExecCall call;
  call.argv = HV_TRY(string_list(body, "argv", 4096));
  if (call.argv.empty() || call.argv[0].empty())
    return Error(ErrorCode::kInvalidArgument, "field 'argv' must name a command, e.g. [\"uname\", \"-a\"]");
  call.env = HV_TRY(string_list(body, "env", 4096));
  for (const std::string& entry : call.env)
    if (entry.find('=') == std::string::npos || entry[0] == '=')
      return Error(ErrorCode::kInvalidArgument, "field 'env': each entry is NAME=value");
  if (body.contains("cwd")) {
    if (!body["cwd"].is_string()) return Error(ErrorCode::kInvalidArgument, "field 'cwd' must be a string");
    call.cwd = body["cwd"].get<std::string>();
  }
  if (body.contains("stdin")) {
    if (!body["stdin"].is_string()) return Error(ErrorCode::kInvalidArgument, "field 'stdin' must be a string");
    call.stdin_data = body["stdin"].get<std::string>();
  }
  call.timeout_seconds = static_cast<uint32_t>(HV_TRY(unsigned_field(body, "timeout_seconds", 60, 86400)));
  return call;
}

Result<PortForward> parse_forward(const json& body) {
  PortForward forward;
  forward.nic = static_cast<uint32_t>(HV_TRY(unsigned_field(body, "nic", 0, 7)));
  if (body.contains("proto")) {
    if (!body["proto"].is_string()) return Error(ErrorCode::kInvalidArgument, "field 'proto' must be tcp or udp");
    forward.proto = body["proto"].get<std::string>();
  }
  if (forward.proto != "tcp" && forward.proto != "udp")
    return Error(ErrorCode::kInvalidArgument, "field 'proto' must be tcp or udp");
  for (const char* field : {"host_addr", "guest_addr"}) {
    if (!body.contains(field)) continue;
    if (!body[field].is_string() || body[field].get_ref<const std::string&>().size() > 64)
      return Error(ErrorCode::kInvalidArgument, std::string("field '") + field + "' must be an IPv4 address");
    (std::string_view(field) == "host_addr" ? forward.host_addr : forward.guest_addr) = body[field].get<std::string>();
  }
  forward.host_port = static_cast<uint16_t>(HV_TRY(unsigned_field(body, "host_port", 0, 65535)));
  forward.guest_port = static_cast<uint16_t>(HV_TRY(unsigned_field(body, "guest_port", 0, 65535)));
  if (forward.host_port == 0) return Error(ErrorCode::kInvalidArgument, "field 'host_port' (1-65535) is required");
  return forward;
}

Result<uint32_t> parse_mode(const std::string& text) {
  uint32_t mode = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
  if (ec != std::errc() || end != text.data() + text.size() || mode > 07777)
    return Error(ErrorCode::kInvalidArgument, "query 'mode' must be octal permission bits, e.g. 0644");
  return mode;
}

ApiResponse method_not_allowed(const std::string& method, const std::string& allowed) {
  return error_response(405, "method-not-allowed", method + " is not allowed here; use " + allowed);
}

std::optional<VmAction> action_named(const std::string& name) {
  static const std::map<std::string, VmAction> kActions{
      {"start", VmAction::kStart}, {"stop", VmAction::kStop},     {"kill", VmAction::kKill},
      {"pause", VmAction::kPause}, {"resume", VmAction::kResume}, {"reset", VmAction::kReset},
      {"suspend", VmAction::kSuspend}};
  auto it = kActions.find(name);
  if (it == kActions.end()) return std::nullopt;
  return it->second;
}

Result<ApiResponse> route_vm(VmService& service, const ApiRequest& request, const Target& target) {
  const auto& s = target.segments;  // v1 vms NAME ...
  const std::string& m = request.method;
  const std::string& name = s[2];
  HV_TRY(daemon::check_name(name, "VM name"));
  if (s.size() == 3) {
    if (m == "GET") return from_result(service.get_vm(name));
    if (m == "PATCH") return from_result(service.update_vm(name, HV_TRY(parse_body(request.body, true))));
    if (m == "DELETE") {
      const auto force = target.query.find("force");
      return from_result(service.delete_vm(name, force != target.query.end() && force->second == "true"));
    }
    return method_not_allowed(m, "GET, PATCH or DELETE");
  }
  const std::string& what = s[3];
  if (s.size() == 4) {
    if (auto action = action_named(what)) {
      if (m != "POST") return method_not_allowed(m, "POST");
      const json body = HV_TRY(parse_body(request.body, false));
      const auto timeout = HV_TRY(unsigned_field(body, "timeout_seconds", 30, 3600));
      return from_result(service.act(name, *action, static_cast<uint32_t>(timeout)));
    }
    if (what == "snapshots") {
      if (m == "GET") return from_result(service.list_snapshots(name));
      if (m == "POST") {
        const json body = HV_TRY(parse_body(request.body, true));
        return from_result(service.create_snapshot(name, HV_TRY(name_field(body, "name", "snapshot name"))), 201);
      }
      return method_not_allowed(m, "GET or POST");
    }
    if (what == "clone") {
      if (m != "POST") return method_not_allowed(m, "POST");
      const json body = HV_TRY(parse_body(request.body, true));
      const std::string new_name = HV_TRY(name_field(body, "name", "VM name"));
      std::optional<std::string> snapshot;
      if (body.contains("snapshot") && !body["snapshot"].is_null())
        snapshot = HV_TRY(name_field(body, "snapshot", "snapshot name"));
      return from_result(service.clone_vm(name, new_name, snapshot), 201);
    }
    if (what == "exec") {
      if (m == "GET") {  // the interactive form, a WebSocket
        ApiResponse response;
        response.kind = ApiResponse::Kind::kExecStream;
        response.vm = name;
        return response;
      }
      if (m != "POST") return method_not_allowed(m, "POST (or GET, a WebSocket)");
      return from_result(service.exec(name, HV_TRY(parse_exec(HV_TRY(parse_body(request.body, true))))));
    }
    if (what == "files") {
      const auto path = target.query.find("path");
      if (path == target.query.end() || path->second.empty() || path->second[0] != '/')
        return Error(ErrorCode::kInvalidArgument, "query 'path' must be an absolute path in the guest");
      if (m == "GET") {
        auto data = service.read_file(name, path->second);
        if (!data) return error_response(data.error());
        ApiResponse response;
        response.content_type = "application/octet-stream";
        response.body = std::move(data.value());
        return response;
      }
      if (m == "PUT") {
        const auto mode = target.query.find("mode");
        const uint32_t bits = mode == target.query.end() ? 0644 : HV_TRY(parse_mode(mode->second));
        return from_result(service.write_file(name, path->second, request.body, bits));
      }
      return method_not_allowed(m, "GET or PUT");
    }
    if (what == "port-forwards") {
      const PortForward forward = HV_TRY(parse_forward(HV_TRY(parse_body(request.body, true))));
      if (m == "POST") return from_result(service.add_port_forward(name, forward), 201);
      if (m == "DELETE") return from_result(service.remove_port_forward(name, forward));
      return method_not_allowed(m, "POST or DELETE");
    }
    if (what == "balloon") {
      if (m == "GET") return from_result(service.balloon(name));
      if (m == "PUT") {
        const json body = HV_TRY(parse_body(request.body, true));
        if (!body.contains("bytes")) return Error(ErrorCode::kInvalidArgument, "field 'bytes' is required");
        return from_result(service.set_balloon(name, HV_TRY(unsigned_field(body, "bytes", 0, uint64_t{1} << 50))));
      }
      return method_not_allowed(m, "GET or PUT");
    }
    if (what == "metrics") {
      if (m != "GET") return method_not_allowed(m, "GET");
      return from_result(service.metrics(name));
    }
    if (what == "logs") {
      if (m != "GET") return method_not_allowed(m, "GET");
      const auto which = target.query.find("which");
      const std::string kind = which == target.query.end() ? "hostvisor" : which->second;
      if (kind != "hostvisor" && kind != "console")
        return Error(ErrorCode::kInvalidArgument, "query 'which' must be hostvisor or console");
      auto log = service.read_log(name, kind == "console");
      if (!log) return error_response(log.error());
      ApiResponse response;
      response.content_type = "text/plain; charset=utf-8";
      response.body = std::move(log.value());
      return response;
    }
    if (what == "console") {
      if (m != "GET") return method_not_allowed(m, "GET (a WebSocket upgrade)");
      ApiResponse response;
      response.kind = ApiResponse::Kind::kConsole;
      response.vm = name;
      return response;
    }
  }
  if (s.size() == 5 && what == "snapshots") {
    const std::string& snapshot = s[4];
    HV_TRY(daemon::check_name(snapshot, "snapshot name"));
    if (m == "DELETE") return from_result(service.delete_snapshot(name, snapshot));
    return method_not_allowed(m, "DELETE");
  }
  if (s.size() == 6 && what == "snapshots" && s[5] == "restore") {
    HV_TRY(daemon::check_name(s[4], "snapshot name"));
    if (m != "POST") return method_not_allowed(m, "POST");
    const json body = HV_TRY(parse_body(request.body, false));
    bool verify = false;
    if (body.contains("verify")) {
      if (!body["verify"].is_boolean()) return Error(ErrorCode::kInvalidArgument, "field 'verify' must be true or false");
      verify = body["verify"].get<bool>();
    }
    return from_result(service.restore_snapshot(name, s[4], verify));
  }
  return error_response(404, "not-found", "no such API path: " + request.target);
}

Result<ApiResponse> route(VmService& service, const ApiRequest& request) {
  const Target target = HV_TRY(parse_target(request.target));
  const auto& s = target.segments;
  const std::string& m = request.method;
  if (s.empty() || s[0] != "v1")
    return error_response(404, "not-found", "no such API path: " + request.target + " (the API is under /v1/)");
  if (s.size() == 1) {
    if (m != "GET") return method_not_allowed(m, "GET");
    return json_response(200, {{"api", "v1"}, {"server", "hostvisor"}});
  }
  if (s[1] == "vms") {
    if (s.size() == 2) {
      if (m == "GET") return from_result(service.list_vms());
      if (m == "POST")
        return from_result(service.create_vm(HV_TRY(daemon::vm_config_from_json(HV_TRY(parse_body(request.body, true))))),
                           201);
      return method_not_allowed(m, "GET or POST");
    }
    return route_vm(service, request, target);
  }
  if (s[1] == "networks") {
    if (s.size() == 2) {
      if (m == "GET") return from_result(service.list_networks());
      if (m == "POST") {
        const json body = HV_TRY(parse_body(request.body, true));
        const std::string name = HV_TRY(name_field(body, "name", "network name"));
        std::string dhcp;
        if (body.contains("dhcp") && !body["dhcp"].is_null()) {
          if (!body["dhcp"].is_string() || body["dhcp"].get_ref<const std::string&>().size() > 32)
            return Error(ErrorCode::kInvalidArgument, "field 'dhcp' must be a CIDR such as 10.5.0.0/24");
          dhcp = body["dhcp"].get<std::string>();
        }
        return from_result(service.create_network(name, dhcp), 201);
      }
      return method_not_allowed(m, "GET or POST");
    }
    if (s.size() == 3) {
      HV_TRY(daemon::check_name(s[2], "network name"));
      if (m == "DELETE") return from_result(service.delete_network(s[2]));
      return method_not_allowed(m, "DELETE");
    }
  }
  if (s[1] == "events" && s.size() == 2) {
    if (m != "GET") return method_not_allowed(m, "GET");
    ApiResponse response;
    response.kind = ApiResponse::Kind::kEventStream;
    response.content_type = "application/x-ndjson";
    return response;
  }
  return error_response(404, "not-found", "no such API path: " + request.target);
}

}  // namespace

unsigned http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kBusy:
      return 409;
    case ErrorCode::kUnsupported:
      return 501;
    default:
      return 500;
  }
}

const char* api_error_code(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
      return "invalid-argument";
    case ErrorCode::kNotFound:
      return "not-found";
    case ErrorCode::kBusy:
      return "conflict";
    case ErrorCode::kUnsupported:
      return "not-supported";
    default:
      return "failed";
  }
}

ApiResponse error_response(unsigned status, const std::string& code, const std::string& message) {
  return json_response(status, {{"error", {{"code", code}, {"message", message}}}});
}

ApiResponse error_response(const Error& error) {
  return error_response(http_status(error.code()), api_error_code(error.code()), error.message());
}

Result<ExecStream> parse_exec_stream_request(const std::string& text) {
  try {
    const json body = HV_TRY(parse_body(text, true));
    ExecStream stream;
    stream.call = HV_TRY(parse_exec(body));
    if (body.contains("terminal")) {
      if (!body["terminal"].is_boolean()) return Error(ErrorCode::kInvalidArgument, "field 'terminal' must be true or false");
      stream.terminal = body["terminal"].get<bool>();
    }
    stream.rows = static_cast<uint16_t>(HV_TRY(unsigned_field(body, "rows", 0, 4096)));
    stream.cols = static_cast<uint16_t>(HV_TRY(unsigned_field(body, "cols", 0, 4096)));
    return stream;
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, std::string("internal error: ") + e.what());
  }
}

ApiResponse handle_request(VmService& service, const ApiRequest& request) {
  try {
    auto response = route(service, request);
    if (!response) return error_response(response.error());
    return std::move(response.value());
  } catch (const std::exception& e) {
    // nlohmann's accessors throw on a type we did not check; that is a bug
    // here, answered as one rather than ending the daemon.
    return error_response(500, "failed", std::string("internal error: ") + e.what());
  }
}

}  // namespace hostvisor::api
