#include "agent/protocol/channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace hostvisor::agent::protocol {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

Result<void> wait_for(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("agent connection: poll");
    if (n == 0) return Error(ErrorCode::kIo, std::string("agent connection: timed out waiting to ") + what);
    return ok();
  }
}

}  // namespace

FrameChannel::FrameChannel(UniqueFd fd) : fd_(std::move(fd)) {}

void FrameChannel::send_json(const nlohmann::json& message) {
  out_ += encode_json_frame(message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void FrameChannel::send_data_frame(Stream stream, std::span<const uint8_t> data) {
  out_ += encode_data_frame(stream, data);
}

void FrameChannel::send_data(Stream stream, std::span<const uint8_t> data) {
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kMaxDataBytes);
    send_data_frame(stream, data.first(n));
    data = data.subspan(n);
  }
}

Result<void> FrameChannel::write_some() {
  while (out_sent_ < out_.size()) {
    const ssize_t n = ::send(fd_.get(), out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      // The peer stopped reading: it may have sent its last frames (an exec's
      // exit) and closed. What it will never read is dropped; the reading side
      // reports the close once those frames are taken.
      out_.clear();
      out_sent_ = 0;
      return ok();
    }
    if (n < 0) return Error::from_errno("agent connection: send");
    out_sent_ += static_cast<size_t>(n);
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  } else if (out_sent_ > (1u << 20)) {
    out_.erase(0, out_sent_);
    out_sent_ = 0;
  }
  return ok();
}

Result<bool> FrameChannel::read_some() {
  if (eof_) return false;
  uint8_t buf[FrameDecoder::kReadChunk];
  const size_t want = std::min(sizeof(buf), decoder_.room());
  if (want == 0) return true;  // a whole frame is buffered; the caller takes it first
  const ssize_t n = ::recv(fd_.get(), buf, want, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (n < 0) return Error::from_errno("agent connection: recv");
  if (n == 0) {
    eof_ = true;
    return false;
  }
  HV_TRY(decoder_.feed(std::span<const uint8_t>(buf, static_cast<size_t>(n))));
  return true;
}

Result<void> FrameChannel::flush(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    HV_TRY(write_some());
    if (out_pending() == 0) return ok();
    HV_TRY(wait_for(fd_.get(), POLLOUT, deadline, "send"));
  }
}

Result<Frame> FrameChannel::receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto frame = HV_TRY(decoder_.next());
    if (frame) return std::move(*frame);
    if (out_pending() > 0) HV_TRY(write_some());
    HV_TRY(wait_for(fd_.get(), POLLIN, deadline, "receive"));
    const bool open = HV_TRY(read_some());
    if (!open) {
      if (decoder_.buffered() > 0) return Error(ErrorCode::kCorrupt, "agent connection: closed inside a frame");
      return Error(ErrorCode::kIo, "agent connection: closed by the peer");
    }
  }
}

Result<nlohmann::json> FrameChannel::receive_json(std::chrono::milliseconds timeout) {
  Frame frame = HV_TRY(receive(timeout));
  if (frame.type != FrameType::kJson)
    return Error(ErrorCode::kCorrupt, "agent protocol: expected a JSON frame, got data");
  return parse_object(frame.payload);
}

Result<nlohmann::json> parse_object(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(ErrorCode::kCorrupt, "agent protocol: a JSON frame does not hold valid JSON");
  if (!j.is_object()) return Error(ErrorCode::kCorrupt, "agent protocol: a JSON frame does not hold an object");
  return j;
}

Result<std::string> optional_string(const nlohmann::json& object, const char* name, std::string fallback,
                                    size_t max_bytes) {
  const auto it = object.find(name);
  if (it == object.end()) return fallback;
  if (!it->is_string())
    return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is not a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_bytes)
    return Error(ErrorCode::kOutOfRange, std::string("agent protocol: \"") + name + "\" is longer than " +
                                             std::to_string(max_bytes) + " bytes");
  return s;
}

Result<int64_t> optional_int(const nlohmann::json& object, const char* name, int64_t fallback) {
  const auto it = object.find(name);
  if (it == object.end()) return fallback;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned() && it->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(it->get<uint64_t>());
  return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is not a 64-bit integer");
}

Result<bool> optional_bool(const nlohmann::json& object, const char* name, bool fallback) {
  const auto it = object.find(name);
  if (it == object.end()) return fallback;
  if (!it->is_boolean())
    return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is not true or false");
  return it->get<bool>();
}

Result<std::string> string_field(const nlohmann::json& object, const char* name, size_t max_bytes) {
  if (!object.contains(name))
    return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is missing");
  return optional_string(object, name, "", max_bytes);
}

Result<int64_t> int_field(const nlohmann::json& object, const char* name) {
  if (!object.contains(name))
    return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is missing");
  return optional_int(object, name, 0);
}

Result<bool> bool_field(const nlohmann::json& object, const char* name) {
  if (!object.contains(name))
    return Error(ErrorCode::kCorrupt, std::string("agent protocol: \"") + name + "\" is missing");
  return optional_bool(object, name, false);
}

Result<void> check_reply(const nlohmann::json& reply) {
  const bool success = HV_TRY(bool_field(reply, "ok"));
  if (success) return ok();
  const std::string message = HV_TRY(optional_string(reply, "error", "failed without saying why", 1024));
  const std::string code = HV_TRY(optional_string(reply, "code", "", 64));
  const ErrorCode error_code = code == "unsupported" ? ErrorCode::kUnsupported
                               : code == "not_found" ? ErrorCode::kNotFound
                                                     : ErrorCode::kGuest;
  return Error(error_code, "hostvisor-agent: " + message);
}

}  // namespace hostvisor::agent::protocol
