#include "web/web_token.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

namespace hostvisor::web {

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  // volatile: the compiler may not end the loop at the first difference.
  volatile uint8_t difference = 0;
  for (size_t i = 0; i < a.size(); ++i)
    difference = difference | (static_cast<uint8_t>(a[i]) ^ static_cast<uint8_t>(b[i]));
  return difference == 0;
}

Result<std::string> WebToken::issue() {
  std::lock_guard lock(mutex_);
  if (!token_.empty()) return token_;
  uint8_t bytes[kHexDigits / 2];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("getrandom for the web console's token");
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string token;
  for (uint8_t byte : bytes) {
    token += kHex[byte >> 4];
    token += kHex[byte & 15];
  }
  token_ = token;
  return token;
}

void WebToken::revoke() {
  std::lock_guard lock(mutex_);
  token_.clear();
}

bool WebToken::issued() const {
  std::lock_guard lock(mutex_);
  return !token_.empty();
}

bool WebToken::matches(std::string_view candidate) const {
  std::lock_guard lock(mutex_);
  return !token_.empty() && constant_time_equal(candidate, token_);
}

}  // namespace hostvisor::web
