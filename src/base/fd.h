// Owning file descriptor and eventfd wrappers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"

namespace hostvisor {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Opens path with flags (O_CLOEXEC is always added).
Result<UniqueFd> open_file(const std::string& path, int flags, int mode = 0644);

// Writes all of `data` to fd, retrying short writes and EINTR/EAGAIN. Stops
// silently when fd is closed or broken (a console with nowhere to go).
void write_all(int fd, std::span<const uint8_t> data);

// Writes all of `data` to a blocking fd, retrying short writes and EINTR.
// Unlike write_all, an error (a full disk, a closed pipe) is returned, for
// writes whose loss would lose data.
Result<void> write_fully(int fd, std::span<const uint8_t> data);
inline Result<void> write_fully(int fd, std::string_view data) {
  return write_fully(fd, std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

// Reads a whole (small) file, such as a kernel image or a /proc entry.
Result<std::string> read_file(const std::string& path);

class EventFd {
 public:
  static Result<EventFd> create(unsigned initial = 0, int flags = 0);
  int fd() const { return fd_.get(); }
  // Adds value to the counter; wakes a reader.
  void signal(uint64_t value = 1) const;
  // Reads and clears the counter; 0 if non-blocking and nothing was pending.
  uint64_t consume() const;

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hostvisor
