// Logging: spdlog to stderr. The guest's console owns stdout, so every
// diagnostic goes to stderr, and only warnings and errors by default.
#pragma once

#include <spdlog/spdlog.h>

namespace hostvisor {

// Sets the level from a name ("debug", "info", "warn", ...); unknown names keep "warn".
void init_logging(const std::string& level);

}  // namespace hostvisor

#define HV_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define HV_LOG_INFO(...) spdlog::info(__VA_ARGS__)
#define HV_LOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define HV_LOG_ERROR(...) spdlog::error(__VA_ARGS__)
