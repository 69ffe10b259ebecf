#include "agent/guest/file_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "agent/guest/session.h"
#include "base/fd.h"

namespace hostvisor::agent::guest {
namespace {

using namespace std::chrono_literals;
using protocol::FrameChannel;
using protocol::FrameType;
using protocol::Stream;

constexpr int64_t kMaxFileBytes = int64_t{1} << 40;
constexpr auto kIdleTimeout = 60s;  // between two frames of a transfer

Result<std::string> guest_path(const nlohmann::json& request) {
  std::string path = HV_TRY(protocol::string_field(request, "path", 4096));
  if (path.empty() || path.front() != '/')
    return Error(ErrorCode::kInvalidArgument, "the guest path \"" + path + "\" is not absolute");
  if (path.find('\0') != std::string::npos) return Error(ErrorCode::kInvalidArgument, "the guest path holds a NUL");
  return path;
}

// The content arrives after the first reply; the second says it landed.
Result<void> receive_content(FrameChannel& channel, const std::string& path, int64_t size, uint32_t mode,
                             int64_t mtime_ns) {
  const auto slash = path.rfind('/');
  std::string temp = path.substr(0, slash + 1) + ".hostvisor-agent-XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("cannot create a file beside " + path);
  reply_ok(channel);
  auto copy = [&]() -> Result<void> {
    HV_TRY(channel.flush(kIdleTimeout));
    int64_t received = 0;
    for (;;) {
      auto frame = HV_TRY(channel.receive(kIdleTimeout));
      if (frame.type != FrameType::kData || frame.stream != Stream::kStdin)
        return Error(ErrorCode::kCorrupt, "write_file: expected the file's data");
      if (frame.payload.empty()) break;
      if (static_cast<int64_t>(frame.payload.size()) > size - received)
        return Error(ErrorCode::kOutOfRange,
                     "write_file: the host sent more than the " + std::to_string(size) + " bytes it announced");
      HV_TRY(write_fully(fd.get(), frame.payload));
      received += static_cast<int64_t>(frame.payload.size());
    }
    if (received != size)
      return Error(ErrorCode::kCorrupt,
                   "write_file: got " + std::to_string(received) + " of " + std::to_string(size) + " bytes");
    if (::fchmod(fd.get(), mode) != 0) return Error::from_errno("fchmod " + path);
    const timespec times[2] = {
        {0, UTIME_OMIT}, {static_cast<time_t>(mtime_ns / 1'000'000'000), static_cast<long>(mtime_ns % 1'000'000'000)}};
    if (::futimens(fd.get(), times) != 0) return Error::from_errno("futimens " + path);
    if (::fsync(fd.get()) != 0) return Error::from_errno("fsync " + path);
    if (::rename(temp.c_str(), path.c_str()) != 0) return Error::from_errno("rename to " + path);
    return ok();
  };
  auto copied = copy();
  if (!copied.ok()) ::unlink(temp.c_str());
  return copied;
}

}  // namespace

Result<FileRequest> parse_write_file_request(const nlohmann::json& request) {
  FileRequest r;
  r.path = HV_TRY(guest_path(request));
  r.size = HV_TRY(protocol::int_field(request, "size"));
  const int64_t mode = HV_TRY(protocol::int_field(request, "mode"));
  r.mtime_ns = HV_TRY(protocol::int_field(request, "mtime_ns"));
  if (r.size < 0 || r.size > kMaxFileBytes) return Error(ErrorCode::kOutOfRange, "write_file: size out of range");
  if (mode < 0 || mode > 07777) return Error(ErrorCode::kOutOfRange, "write_file: mode out of range");
  if (r.mtime_ns < 0) return Error(ErrorCode::kOutOfRange, "write_file: mtime before 1970");
  r.mode = static_cast<uint32_t>(mode);
  return r;
}

Result<std::string> parse_read_file_request(const nlohmann::json& request) { return guest_path(request); }

void receive_file(FrameChannel& channel, const nlohmann::json& request) {
  auto run = [&]() -> Result<void> {
    const FileRequest r = HV_TRY(parse_write_file_request(request));
    return receive_content(channel, r.path, r.size, r.mode, r.mtime_ns);
  };
  if (auto done = run(); done.ok())
    reply_ok(channel);
  else
    reply_error(channel, done.error());
}

void send_file(FrameChannel& channel, const nlohmann::json& request) {
  auto open_it = [&]() -> Result<std::pair<UniqueFd, struct stat>> {
    const std::string path = HV_TRY(parse_read_file_request(request));
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      const int err = errno;
      return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                   "cannot open " + path + ": " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::from_errno("fstat " + path);
    if (!S_ISREG(st.st_mode)) return Error(ErrorCode::kInvalidArgument, path + " is not a regular file");
    return std::pair<UniqueFd, struct stat>(std::move(fd), st);
  };
  auto opened = open_it();
  if (!opened.ok()) {
    reply_error(channel, opened.error());
    return;
  }
  auto& [fd, st] = *opened;
  const int64_t size = st.st_size;
  reply_ok(channel, {{"mode", st.st_mode & 07777},
                     {"mtime_ns", int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec},
                     {"size", size}});
  int64_t sent = 0;
  std::string error;
  std::vector<uint8_t> buf(protocol::kMaxDataBytes);
  while (sent < size) {
    const ssize_t n = ::read(fd.get(), buf.data(), static_cast<size_t>(std::min<int64_t>(buf.size(), size - sent)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n == 0 ? "the file shrank while it was read" : std::string("read: ") + std::strerror(errno);
      break;
    }
    channel.send_data(Stream::kStdout, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
    sent += n;
    if (channel.out_pending() >= FrameChannel::kOutHighWater && !channel.flush(kIdleTimeout).ok()) return;
  }
  channel.send_end(Stream::kStdout);
  if (error.empty())
    reply_ok(channel);
  else
    reply_error(channel, error);
}

}  // namespace hostvisor::agent::guest
