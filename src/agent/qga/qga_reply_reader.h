// Splits the byte stream from qemu-guest-agent into replies. qemu-ga writes
// each reply as one JSON object followed by "\n"; after
// guest-sync-delimited it first writes a 0xFF byte, which marks where the
// replies to this client begin (whatever came before was meant for an
// earlier client, or is a half reply). Hostile input: a reply longer than the
// limit, one that is not a JSON object, or bytes after the limit with no
// newline are errors, and the reader never holds more than the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"

namespace hostvisor::agent::qga {

class QgaReplyReader {
 public:
  explicit QgaReplyReader(size_t max_reply_bytes) : max_reply_(max_reply_bytes) {}

  // Drop everything up to and including the next 0xFF (guest-sync-delimited).
  void expect_sentinel() {
    awaiting_sentinel_ = true;
    line_.clear();
  }
  bool awaiting_sentinel() const { return awaiting_sentinel_; }
  void set_max_reply(size_t bytes) { max_reply_ = bytes; }

  // Takes bytes off the front of `bytes` until one reply is complete; returns
  // it (and how many bytes were used, in `used`), or nothing if more bytes
  // are needed. An error for a reply that breaks the rules; the reader then
  // waits for a sentinel again.
  Result<std::optional<nlohmann::json>> feed(std::span<const uint8_t> bytes, size_t& used);

 private:
  size_t max_reply_;
  bool awaiting_sentinel_ = false;
  std::string line_;
};

}  // namespace hostvisor::agent::qga
