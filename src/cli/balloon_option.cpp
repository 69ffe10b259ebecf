#include "cli/balloon_option.h"

#include <charconv>
#include <set>

#include "cli/device_options.h"

namespace hostvisor::cli {

namespace {

Error bad(const std::string& what) { return Error(ErrorCode::kInvalidArgument, "--balloon: " + what); }

Result<bool> on_off(const std::string& key, const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  return bad(key + "=" + value + ": expected on or off");
}

}  // namespace

Result<std::optional<BalloonConfig>> parse_balloon_option(const std::string& text) {
  if (text == "off" || text == "none") return std::optional<BalloonConfig>();
  BalloonConfig config;
  if (text.empty() || text == "on") return std::optional<BalloonConfig>(config);
  std::set<std::string> seen;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string field = text.substr(start, comma - start);
    start = comma + 1;
    const size_t equals = field.find('=');
    if (equals == std::string::npos)
      return bad("'" + field +
                 "': expected KEY=VALUE (deflate-on-oom=on|off, free-page-reporting=on|off, stats-interval=SECONDS, "
                 "transport=pci|mmio)");
    const std::string key = field.substr(0, equals), value = field.substr(equals + 1);
    if (!seen.insert(key).second) return bad(key + " is given twice; give it once");
    if (key == "deflate-on-oom") {
      config.deflate_on_oom = HV_TRY(on_off(key, value));
    } else if (key == "free-page-reporting") {
      config.free_page_reporting = HV_TRY(on_off(key, value));
    } else if (key == "stats-interval") {
      uint32_t seconds = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      // A day is far beyond any use and keeps the deadline arithmetic small.
      if (ec != std::errc() || end != value.data() + value.size() || seconds > 86400)
        return bad("stats-interval=" + value + ": expected whole seconds from 0 (no statistics) to 86400");
      config.stats_interval_seconds = seconds;
    } else if (key == "transport") {
      auto transport = parse_virtio_transport(value);
      if (!transport) return bad(transport.error().message());
      config.transport = *transport;
    } else {
      return bad("unknown key '" + key +
                 "' (expected deflate-on-oom, free-page-reporting, stats-interval or transport)");
    }
  }
  return std::optional<BalloonConfig>(config);
}

}  // namespace hostvisor::cli
