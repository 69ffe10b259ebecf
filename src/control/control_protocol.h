// The per-VM control protocol's wire format (docs/vm-control-protocol.md):
// newline-delimited JSON objects of at most kMaxLineBytes, requests with an
// id and an op, replies with ok and a result or an error, and event lines.
// Shared by the server in the VM process and the client library.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::control {

using nlohmann::json;

// A line, its '\n' included, is at most this long.
constexpr size_t kMaxLineBytes = 64 * 1024;

// The protocol's error codes ("invalid-argument", ...).
enum class WireError { kInvalidArgument, kNotSupported, kBusy, kFailed };
const char* wire_error_name(WireError code);
std::optional<WireError> parse_wire_error(std::string_view name);
// How a hostvisor Error is told to a client, and back.
WireError wire_error_for(ErrorCode code);
ErrorCode error_code_for(WireError code);

struct Request {
  json id;  // number, string or null: echoed in the reply
  std::string op;
  json args;  // the whole request object (the op's arguments are its members)
};

// Parses one request line (without its '\n'). Untrusted input: never throws.
// On failure the error says what is wrong, and `id` (if given) is set to the
// id the reply should carry, when the line was an object with one.
Result<Request> parse_request(std::string_view line, json* id = nullptr);

// Reply and event lines, '\n' included.
std::string ok_reply(const json& id, json result);
std::string error_reply(const json& id, WireError code, const std::string& message);
std::string event_line(json event);

// Argument accessors for an op's handler: a missing member gives `fallback`
// (or an error if there is none); a member of the wrong type is an error.
Result<std::string> string_arg(const json& args, const char* name, std::optional<std::string> fallback = {});
Result<uint64_t> uint_arg(const json& args, const char* name, std::optional<uint64_t> fallback = {});
Result<bool> bool_arg(const json& args, const char* name, std::optional<bool> fallback = {});

// Splits a byte stream into lines of at most kMaxLineBytes.
class LineSplitter {
 public:
  // Appends bytes read from the stream.
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  enum class Status { kLine, kNeedMore, kTooLong };
  // Takes the next complete line (without '\n') into `line`.
  Status next(std::string& line);
  // What is buffered after the last complete line (for a connection that
  // turns into a raw byte stream after a line).
  std::string take_rest();

 private:
  std::string buffer_;
  size_t scanned_ = 0;  // bytes of buffer_ known to hold no '\n'
};

}  // namespace hostvisor::control
