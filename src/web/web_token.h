// The web console's token: 256 random bits, made when `hostvisor web` first
// asks for it and kept until the daemon ends or `hostvisor web --revoke`
// drops it (the next `hostvisor web` makes a new one). Without a token every
// request over TCP is refused.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::web {

class WebToken {
 public:
  static constexpr size_t kHexDigits = 64;

  // The current token, made first if there is none.
  Result<std::string> issue();
  void revoke();
  bool issued() const;
  // Whether `candidate` is the current token, in a time that does not depend
  // on how much of it matches (only on its length, which is no secret).
  bool matches(std::string_view candidate) const;

 private:
  mutable std::mutex mutex_;
  std::string token_;
};

// Equal strings, compared in a time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace hostvisor::web
