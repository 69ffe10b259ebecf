// The agent protocol's framing (docs/agent-protocol.md): every frame is a
// 4-byte big-endian length, a type byte, and the payload. JSON frames carry
// one JSON object (requests, replies, events); data frames carry a stream id
// byte and raw bytes (a command's stdin/stdout/stderr, a file's content).
//
// Both ends decode frames from a peer they do not trust, so the decoder
// refuses a length over the type's limit before buffering it, and its buffer
// never holds more than one largest frame plus one read.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"

namespace hostvisor::agent::protocol {

inline constexpr int kProtocolVersion = 1;

enum class FrameType : uint8_t { kJson = 1, kData = 2 };

// Data frame stream ids. Host to agent: stdin (a command's input, a file's
// content). Agent to host: stdout (also a pty's output and a file's content),
// stderr. A data frame with no bytes ends its stream.
enum class Stream : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2 };

inline constexpr size_t kFrameHeaderBytes = 5;          // length + type
inline constexpr size_t kMaxJsonPayload = 256 * 1024;    // one JSON object
inline constexpr size_t kMaxDataPayload = 64 * 1024;     // stream id + bytes
inline constexpr size_t kMaxDataBytes = kMaxDataPayload - 1;
inline constexpr size_t kMaxFrameBytes = kFrameHeaderBytes + kMaxJsonPayload;

struct Frame {
  FrameType type = FrameType::kJson;
  Stream stream = Stream::kStdin;  // data frames only
  std::string payload;             // the JSON text, or the data bytes (no stream id)
};

std::string encode_json_frame(const std::string& json_text);
// A data frame; data must be at most kMaxDataBytes (callers cut larger ones).
std::string encode_data_frame(Stream stream, std::span<const uint8_t> data);

class FrameDecoder {
 public:
  // Room for the next read: at most kMaxFrameBytes are ever buffered, so a
  // reader asks how much it may read, reads into its own buffer, and feeds.
  size_t room() const { return kMaxFrameBytes + kReadChunk - buffered(); }
  // Appends bytes from the peer. Error if more than room().
  Result<void> feed(std::span<const uint8_t> bytes);
  // The next whole frame, nullopt if more bytes are needed, or an error for a
  // malformed one (after which the connection should be closed).
  Result<std::optional<Frame>> next();
  size_t buffered() const { return buffer_.size() - consumed_; }

  static constexpr size_t kReadChunk = 64 * 1024;

 private:
  std::string buffer_;
  size_t consumed_ = 0;
};

}  // namespace hostvisor::agent::protocol
