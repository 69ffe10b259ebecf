#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace hostvisor {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("hostvisor");
  logger->set_pattern("hostvisor: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  auto parsed = spdlog::level::from_str(level);
  spdlog::set_level(parsed == spdlog::level::off && level != "off" ? spdlog::level::warn : parsed);
}

}  // namespace hostvisor
