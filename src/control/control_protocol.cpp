#include "control/control_protocol.h"

namespace hostvisor::control {

const char* wire_error_name(WireError code) {
  switch (code) {
    case WireError::kInvalidArgument: return "invalid-argument";
    case WireError::kNotSupported: return "not-supported";
    case WireError::kBusy: return "busy";
    case WireError::kFailed: return "failed";
  }
  return "failed";
}

std::optional<WireError> parse_wire_error(std::string_view name) {
  for (WireError code : {WireError::kInvalidArgument, WireError::kNotSupported, WireError::kBusy, WireError::kFailed})
    if (name == wire_error_name(code)) return code;
  return std::nullopt;
}

WireError wire_error_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange:
    case ErrorCode::kNotFound: return WireError::kInvalidArgument;
    case ErrorCode::kUnsupported: return WireError::kNotSupported;
    case ErrorCode::kBusy: return WireError::kBusy;
    default: return WireError::kFailed;
  }
}

ErrorCode error_code_for(WireError code) {
  switch (code) {
    case WireError::kInvalidArgument: return ErrorCode::kInvalidArgument;
    case WireError::kNotSupported: return ErrorCode::kUnsupported;
    case WireError::kBusy: return ErrorCode::kBusy;
    case WireError::kFailed: return ErrorCode::kIo;
  }
  return ErrorCode::kIo;
}

Result<Request> parse_request(std::string_view line, json* id_out) {
  json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Error(ErrorCode::kInvalidArgument, "the request is not valid JSON");
  if (!parsed.is_object()) return Error(ErrorCode::kInvalidArgument, "the request must be a JSON object");
  Request request;
  if (auto it = parsed.find("id"); it != parsed.end()) {
    if (!it->is_number() && !it->is_string() && !it->is_null())
      return Error(ErrorCode::kInvalidArgument, "\"id\" must be a number, a string or null");
    request.id = *it;
    if (id_out) *id_out = *it;
  }
  auto op = parsed.find("op");
  if (op == parsed.end()) return Error(ErrorCode::kInvalidArgument, "the request has no \"op\"");
  if (!op->is_string()) return Error(ErrorCode::kInvalidArgument, "\"op\" must be a string");
  request.op = op->get<std::string>();
  request.args = std::move(parsed);
  return request;
}

namespace {
std::string dump_line(const json& value) {
  // Replace, not throw, on invalid UTF-8 (a path, a guest-provided string).
  return value.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}
}  // namespace

std::string ok_reply(const json& id, json result) {
  if (result.is_null()) result = json::object();
  return dump_line(json{{"id", id}, {"ok", true}, {"result", std::move(result)}});
}

std::string error_reply(const json& id, WireError code, const std::string& message) {
  return dump_line(json{{"id", id}, {"ok", false}, {"error", {{"code", wire_error_name(code)}, {"message", message}}}});
}

std::string event_line(json event) { return dump_line(event); }

Result<std::string> string_arg(const json& args, const char* name, std::optional<std::string> fallback) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Error(ErrorCode::kInvalidArgument, std::string("missing argument \"") + name + "\"");
  }
  if (!it->is_string()) return Error(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" must be a string");
  return it->get<std::string>();
}

Result<uint64_t> uint_arg(const json& args, const char* name, std::optional<uint64_t> fallback) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Error(ErrorCode::kInvalidArgument, std::string("missing argument \"") + name + "\"");
  }
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
    return Error(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" must be a non-negative integer");
  return it->get<uint64_t>();
}

Result<bool> bool_arg(const json& args, const char* name, std::optional<bool> fallback) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Error(ErrorCode::kInvalidArgument, std::string("missing argument \"") + name + "\"");
  }
  if (!it->is_boolean())
    return Error(ErrorCode::kInvalidArgument, std::string("\"") + name + "\" must be true or false");
  return it->get<bool>();
}

LineSplitter::Status LineSplitter::next(std::string& line) {
  const size_t newline = buffer_.find('\n', scanned_);
  if (newline == std::string::npos) {
    scanned_ = buffer_.size();
    // A line that cannot end within the limit is refused now, so the buffer
    // never grows past it whatever the peer sends.
    return buffer_.size() >= kMaxLineBytes ? Status::kTooLong : Status::kNeedMore;
  }
  if (newline + 1 > kMaxLineBytes) return Status::kTooLong;
  line.assign(buffer_, 0, newline);
  buffer_.erase(0, newline + 1);
  scanned_ = 0;
  return Status::kLine;
}

std::string LineSplitter::take_rest() {
  scanned_ = 0;
  return std::exchange(buffer_, {});
}

}  // namespace hostvisor::control
