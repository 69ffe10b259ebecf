#include "agent/guest/system_control.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::guest {
namespace {

constexpr size_t kMaxEntropyBytes = 4096;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool g_system_operations_enabled = true;

}  // namespace

void set_system_operations_enabled(bool enabled) { g_system_operations_enabled = enabled; }
bool system_operations_enabled() { return g_system_operations_enabled; }

Result<nlohmann::json> set_time(const nlohmann::json& request) {
  const int64_t unix_ns = HV_TRY(protocol::int_field(request, "unix_ns"));
  if (unix_ns < 0) return Error(ErrorCode::kInvalidArgument, "set_time: a time before 1970");
  const int64_t before = realtime_ns();
  timespec ts{static_cast<time_t>(unix_ns / 1'000'000'000), static_cast<long>(unix_ns % 1'000'000'000)};
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) return Error::from_errno("set_time: clock_settime");
  return nlohmann::json{{"offset_ns", before - unix_ns}};
}

Result<nlohmann::json> reseed_rng(const nlohmann::json& request) {
  const std::string hex = HV_TRY(protocol::string_field(request, "entropy", 2 * kMaxEntropyBytes));
  if (hex.empty() || hex.size() % 2 != 0) return Error(ErrorCode::kInvalidArgument, "reseed_rng: entropy must be a non-empty even-length hex string");
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Error(ErrorCode::kInvalidArgument, "reseed_rng: entropy is not hex");
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  // struct rand_pool_info ends in a flexible array of the bytes.
  std::vector<uint8_t> info(sizeof(rand_pool_info) + bytes.size());
  auto* pool = reinterpret_cast<rand_pool_info*>(info.data());
  pool->entropy_count = static_cast<int>(bytes.size() * 8);
  pool->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info.data() + sizeof(rand_pool_info), bytes.data(), bytes.size());
  const int fd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("reseed_rng: open /dev/urandom");
  const int rc = ::ioctl(fd, RNDADDENTROPY, pool);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Error::from_errno("reseed_rng: RNDADDENTROPY", err);
  return nlohmann::json{{"bytes", bytes.size()}};
}

void power_off_after_reply(bool reboot) {
  ::sync();
  ::reboot(reboot ? RB_AUTOBOOT : RB_POWER_OFF);
}

}  // namespace hostvisor::agent::guest
