#include "base/log_rate_limit.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <thread>
#include <vector>

#include "base/log.h"

namespace hostvisor {
namespace {

using namespace std::chrono_literals;
using Clock = LogRateLimit::Clock;

TEST(LogRateLimit, LetsABurstThroughThenDrops) {
  LogRateLimit limiter(3, 1s);
  Clock::time_point t0{};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.admit(t0), 0u) << i;
  EXPECT_FALSE(limiter.admit(t0));
  EXPECT_FALSE(limiter.admit(t0 + 999ms));
}

TEST(LogRateLimit, OneLineAnIntervalAfterTheBurstWithTheCountHeldBack) {
  LogRateLimit limiter(2, 1s);
  Clock::time_point t0{};
  limiter.admit(t0);
  limiter.admit(t0);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.admit(t0 + 100ms));
  EXPECT_EQ(limiter.admit(t0 + 1s), 5u);  // the five dropped above are reported once
  EXPECT_FALSE(limiter.admit(t0 + 1500ms));
  EXPECT_EQ(limiter.admit(t0 + 2s), 1u);
  EXPECT_FALSE(limiter.admit(t0 + 2s));
}

TEST(LogRateLimit, AQuietSpellRefillsTheBurstButNoMore) {
  LogRateLimit limiter(3, 1s);
  Clock::time_point t0{};
  for (int i = 0; i < 3; ++i) limiter.admit(t0);
  EXPECT_FALSE(limiter.admit(t0));
  // An hour later the whole burst is back, and only the burst.
  Clock::time_point later = t0 + 1h;
  EXPECT_EQ(limiter.admit(later), 1u);
  EXPECT_EQ(limiter.admit(later), 0u);
  EXPECT_EQ(limiter.admit(later), 0u);
  EXPECT_FALSE(limiter.admit(later));
}

TEST(LogRateLimit, ASteadyFloodGetsOneLinePerInterval) {
  LogRateLimit limiter(10, 1s);
  Clock::time_point t0{};
  int admitted = 0;
  uint64_t reported = 0;
  // 100 lines a second for 60 s.
  for (int ms = 0; ms < 60'000; ms += 10) {
    if (auto a = limiter.admit(t0 + std::chrono::milliseconds(ms))) {
      ++admitted;
      reported += *a;
    }
  }
  EXPECT_EQ(admitted, 10 + 59);
  // Every line either went out or was counted, except the 99 after the last
  // one that went out (at 59 s), which wait for the next.
  EXPECT_EQ(reported, 6000u - 69u - 99u);
}

TEST(LogRateLimit, CountsEveryLineAcrossThreads) {
  LogRateLimit limiter(5, 1h);
  Clock::time_point t0{};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (limiter.admit(t0)) ++admitted;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 5);
  EXPECT_EQ(limiter.admit(t0 + 1h), 4000u - 5u);
}

TEST(LogRateLimited, TheMacroDropsAFloodAtEachCallSiteOnItsOwn) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("rate-limit-test", sink);
  logger->set_pattern("%v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
  for (int i = 0; i < 1000; ++i) HV_LOG_WARN_LIMITED("bad descriptor {}", i);
  HV_LOG_WARN_LIMITED("bad descriptor {}", 1000);  // another call site: its own limiter
  spdlog::set_default_logger(previous);

  std::string text = out.str();
  size_t lines = std::count(text.begin(), text.end(), '\n');
  EXPECT_EQ(lines, LogRateLimit::kDefaultBurst + 1) << text;
  EXPECT_NE(text.find("bad descriptor 9\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("bad descriptor 10\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("suppressed"), std::string::npos) << text;
}

TEST(LogRateLimited, ReportsTheSuppressedCountOnTheNextLineFromTheSameSite) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("rate-limit-test", sink);
  logger->set_pattern("%v");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
  LogRateLimit limiter(2, 50ms);
  for (int i = 0; i < 7; ++i) log_rate_limited(limiter, spdlog::level::warn, "line {}", i);
  std::this_thread::sleep_for(60ms);
  log_rate_limited(limiter, spdlog::level::warn, "line {}", 7);
  // Below the logger's level nothing is formatted and nothing is used up.
  log_rate_limited(limiter, spdlog::level::info, "quiet {}", 8);
  spdlog::set_default_logger(previous);
  EXPECT_EQ(out.str(), "line 0\nline 1\n(5 more like the next line were suppressed)\nline 7\n");
}

}  // namespace
}  // namespace hostvisor
