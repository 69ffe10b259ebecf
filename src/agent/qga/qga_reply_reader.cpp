#include "agent/qga/qga_reply_reader.h"

#include <algorithm>

namespace hostvisor::agent::qga {

Result<std::optional<nlohmann::json>> QgaReplyReader::feed(std::span<const uint8_t> bytes, size_t& used) {
  used = 0;
  while (used < bytes.size()) {
    if (awaiting_sentinel_) {
      const auto* end = bytes.data() + bytes.size();
      const auto* ff = std::find(bytes.data() + used, end, uint8_t{0xff});
      used = static_cast<size_t>(ff - bytes.data());
      if (ff == end) return std::optional<nlohmann::json>();
      ++used;
      awaiting_sentinel_ = false;
      continue;
    }
    const auto* start = bytes.data() + used;
    const auto* end = bytes.data() + bytes.size();
    const auto* newline = std::find(start, end, uint8_t{'\n'});
    const size_t take = static_cast<size_t>(newline - start);
    if (line_.size() + take > max_reply_) {
      line_.clear();
      awaiting_sentinel_ = true;
      used += take;
      return Error(ErrorCode::kCorrupt, "qemu-guest-agent sent a reply longer than " + std::to_string(max_reply_) +
                                            " bytes");
    }
    line_.append(reinterpret_cast<const char*>(start), take);
    used += take;
    if (newline == end) return std::optional<nlohmann::json>();
    ++used;  // the newline
    std::string line = std::move(line_);
    line_.clear();
    // A lone 0xFF can precede the first reply after a sync; blank lines carry nothing.
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (reply.is_discarded() || !reply.is_object()) {
      awaiting_sentinel_ = true;
      return Error(ErrorCode::kCorrupt, "qemu-guest-agent sent a reply that is not a JSON object");
    }
    return std::optional<nlohmann::json>(std::move(reply));
  }
  return std::optional<nlohmann::json>();
}

}  // namespace hostvisor::agent::qga
