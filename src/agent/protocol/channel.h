// FrameChannel: one end of an agent connection, with the frame decoder for
// what arrives and a bounded queue for what goes out. Both the agent and the
// host client use it: non-blocking I/O driven by the caller's poll loop, or
// the blocking helpers for request/reply exchanges.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "agent/protocol/frame.h"
#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::agent::protocol {

class FrameChannel {
 public:
  explicit FrameChannel(UniqueFd fd);

  int fd() const { return fd_.get(); }

  // Queues a frame. The queue is the caller's to bound: poll loops stop
  // producing while out_pending() >= kOutHighWater.
  void send_json(const nlohmann::json& message);
  void send_data(Stream stream, std::span<const uint8_t> data);  // cut into frames
  void send_end(Stream stream) { send_data_frame(stream, {}); }
  size_t out_pending() const { return out_.size() - out_sent_; }
  static constexpr size_t kOutHighWater = 256 * 1024;

  // Non-blocking: writes what the socket takes. Error when the peer is gone.
  Result<void> write_some();
  // Non-blocking: reads what is there into the decoder. Returns false at EOF.
  Result<bool> read_some();
  // The next decoded frame, if whole.
  Result<std::optional<Frame>> next_frame() { return decoder_.next(); }

  // Blocking helpers with a deadline (timeouts are errors).
  Result<void> flush(std::chrono::milliseconds timeout);
  Result<Frame> receive(std::chrono::milliseconds timeout);
  // receive() that expects a JSON object.
  Result<nlohmann::json> receive_json(std::chrono::milliseconds timeout);

 private:
  void send_data_frame(Stream stream, std::span<const uint8_t> data);

  UniqueFd fd_;
  FrameDecoder decoder_;
  std::string out_;
  size_t out_sent_ = 0;
  bool eof_ = false;
};

// Parses a JSON frame's payload; it must be an object.
Result<nlohmann::json> parse_object(const std::string& text);

// Checked access to a peer's JSON: the field must be there with this type
// (and, for strings, at most max_bytes long). Messages name the field.
Result<std::string> string_field(const nlohmann::json& object, const char* name, size_t max_bytes = 4096);
Result<int64_t> int_field(const nlohmann::json& object, const char* name);
Result<bool> bool_field(const nlohmann::json& object, const char* name);
// Optional variants: the fallback when the field is absent, an error when it
// is there with the wrong type.
Result<std::string> optional_string(const nlohmann::json& object, const char* name, std::string fallback, size_t max_bytes = 4096);
Result<int64_t> optional_int(const nlohmann::json& object, const char* name, int64_t fallback);
Result<bool> optional_bool(const nlohmann::json& object, const char* name, bool fallback);

// A reply's outcome: {"ok":true,...} is success, {"ok":false,"error":"..."}
// becomes an Error carrying the agent's message (kUnsupported when the agent
// says "code": "unsupported", kNotFound for "not_found").
Result<void> check_reply(const nlohmann::json& reply);

}  // namespace hostvisor::agent::protocol
