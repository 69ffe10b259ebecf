#include "base/fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hostvisor {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> open_file(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    int err = errno;
    ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
    return Error(code, path + ": " + std::strerror(err));
  }
  return UniqueFd(fd);
}

void write_all(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    data = data.subspan(static_cast<size_t>(n));
  }
}

Result<void> write_fully(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("write");
    data = data.subspan(static_cast<size_t>(n));
  }
  return ok();
}

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd = HV_TRY(open_file(path, O_RDONLY));
  // Read straight into a string of the file's size, so a kernel or initrd
  // is not copied through a bounce buffer (a 64 KiB one on the stack stayed
  // resident in the main thread's stack for the VMM's life). The size is a
  // guess: proc and sysfs files report 0 or 4096, and a file may grow.
  struct stat st {};
  const size_t guess = ::fstat(fd.get(), &st) == 0 && st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0;
  auto read_some = [&](char* into, size_t length) -> Result<size_t> {
    for (;;) {
      const ssize_t n = ::read(fd.get(), into, length);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return Error::from_errno(path);
    }
  };
  std::string out(guess, '\0');
  size_t used = 0;
  while (used < out.size()) {
    const size_t n = HV_TRY(read_some(out.data() + used, out.size() - used));
    if (n == 0) break;
    used += n;
  }
  out.resize(used);
  char chunk[4096];
  while (const size_t n = HV_TRY(read_some(chunk, sizeof chunk))) out.append(chunk, n);
  return out;
}

Result<EventFd> EventFd::create(unsigned initial, int flags) {
  int fd = ::eventfd(initial, flags | EFD_CLOEXEC);
  if (fd < 0) return Error::from_errno("eventfd");
  return EventFd(UniqueFd(fd));
}

void EventFd::signal(uint64_t value) const {
  // A full counter (2^64-2) cannot happen in practice; a failed write only
  // loses a wake-up that a pending one already covers.
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &value, sizeof value);
}

uint64_t EventFd::consume() const {
  uint64_t value = 0;
  if (::read(fd_.get(), &value, sizeof value) != sizeof value) return 0;
  return value;
}

}  // namespace hostvisor
