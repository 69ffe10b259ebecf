#include "base/size.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace hostvisor {

Result<uint64_t> parse_size(const std::string& text) {
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument,
                 "'" + text + "' is not a size: use a number of bytes or a number with K, M, G or T (e.g. 512M, 20G)");
  };
  size_t i = 0;
  uint64_t whole = 0;
  bool digits = false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - d) / 10) return bad();
    whole = whole * 10 + d;
    digits = true;
    ++i;
  }
  uint64_t frac_num = 0, frac_den = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (frac_den >= 1000000000ull) return bad();
      frac_num = frac_num * 10 + static_cast<uint64_t>(text[i] - '0');
      frac_den *= 10;
      digits = true;
      ++i;
    }
  }
  if (!digits) return bad();
  uint64_t multiplier = 1;
  if (i < text.size()) {
    switch (std::toupper(static_cast<unsigned char>(text[i]))) {
      case 'K': multiplier = 1ull << 10; break;
      case 'M': multiplier = 1ull << 20; break;
      case 'G': multiplier = 1ull << 30; break;
      case 'T': multiplier = 1ull << 40; break;
      case 'B': multiplier = 1; break;
      default: return bad();
    }
    ++i;
    std::string rest = text.substr(i);
    if (!(rest.empty() || rest == "B" || rest == "b" || rest == "iB" || rest == "ib")) return bad();
    if (multiplier == 1 && !rest.empty()) return bad();
  }
  if (whole > UINT64_MAX / multiplier) return bad();
  uint64_t bytes = whole * multiplier;
  if (frac_num != 0) {
    if (multiplier == 1) return bad();
    // frac_num/frac_den * multiplier must be whole bytes.
    const unsigned __int128 scaled = static_cast<unsigned __int128>(frac_num) * multiplier;
    if (scaled % frac_den != 0) return bad();
    const uint64_t extra = static_cast<uint64_t>(scaled / frac_den);
    if (bytes + extra < bytes) return bad();
    bytes += extra;
  }
  return bytes;
}

std::string format_size(uint64_t bytes) {
  static const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0)
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  else if (value == std::floor(value))
    std::snprintf(buf, sizeof buf, "%.0f %s", value, units[unit]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  return buf;
}

}  // namespace hostvisor
