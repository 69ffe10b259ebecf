// A stop signal (SIGTERM, SIGINT, SIGHUP) must end `hostvisor run` promptly
// and cleanly at whatever point of the run it arrives: while the first
// machine is being built, while the guest runs, while a reset tears one
// machine down and builds the next. The reset kernel reboots every few
// milliseconds, so signals sent at scattered delays land in every one of
// those phases; each run must end within a few seconds with status 0, or,
// for a signal that came before hostvisor took the signals over (while it
// was still reading its options), by that signal before printing anything.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "child_process.h"
#include "guest_cases.h"
#include "kvm_skip.h"

namespace hostvisor::testing {
namespace {

constexpr auto kRunTimeout = std::chrono::seconds(60);
// Far below the harness's grace (kTerminateGrace): a machine is torn down in
// milliseconds, so even a loaded host needs no more than this.
constexpr auto kPromptExit = std::chrono::seconds(3);

class StopSignalTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "kvm") HV_SKIP_WITHOUT_DEV_KVM("the kvm stop-signal test");
  }
};

TEST_P(StopSignalTest, EverySignalEndsARebootingGuestPromptly) {
  const std::string& accel = GetParam();
  const std::string kernel = std::string(HV_GUESTS_DIR) + "/reset.elf64";
  const std::string booted = "reset: booted as elf64\n";
  // Fewer runs where the guest is slow to boot (KVM on a software kvm module).
  const int runs = accel == "emu" ? 36 : 9;
  const int signals[] = {SIGTERM, SIGINT, SIGHUP};
  std::mt19937 random(20261121);  // fixed: a failure names its run, and the run can be repeated

  int clean_after_reboots = 0, killed_before_the_run = 0;
  std::chrono::milliseconds slowest_exit{0};
  for (int run = 0; run < runs; ++run) {
    const int signal = signals[run % 3];
    // Half the runs time the signal from the start (it lands before, during
    // or after the first machine's build), half from the n-th boot's first
    // line, a few milliseconds before or after that boot's reset (a reboot
    // takes a few milliseconds on emu).
    const bool from_start = run % 2 == 0;
    // From the start: cubed, so that many land in the first milliseconds,
    // while hostvisor starts and builds its first machine.
    const double u = std::uniform_real_distribution<double>(0, 1)(random);
    const auto delay = std::chrono::microseconds(from_start ? static_cast<int64_t>(300000 * u * u * u)
                                                            : static_cast<int64_t>(15000 * u));
    const size_t boots = 1 + random() % 3;
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point armed{};
    const ChildResult r = run_child(
        {HOSTVISOR_PATH, "run", "--kernel", kernel, "--memory", "64M", "--accel", accel, "--debug-exit"}, kRunTimeout,
        [&](const std::string& out) {
          const auto now = std::chrono::steady_clock::now();
          if (from_start) return now - start >= delay;
          if (armed == std::chrono::steady_clock::time_point{} && count_occurrences(out, booted) >= boots) armed = now;
          return armed != std::chrono::steady_clock::time_point{} && now - armed >= delay;
        },
        "", signal);
    const std::string what = "run " + std::to_string(run) + ": " + ::strsignal(signal) + " " +
                             std::to_string(delay.count()) + " us after " +
                             (from_start ? std::string("the start") : "boot " + std::to_string(boots));
    const std::string log = transcript(what, r);
    ASSERT_TRUE(r.started) << log;
    ASSERT_TRUE(r.terminated) << "the guest did not boot " << boots << " times" << log;
    ASSERT_FALSE(r.timed_out) << "hostvisor did not exit within " << kTerminateGrace.count() << " s of the signal"
                              << log;
    EXPECT_LT(r.stop_to_exit, kPromptExit) << log;
    slowest_exit = std::max(slowest_exit, r.stop_to_exit);
    if (r.signal != 0) {
      // Only possible before hostvisor blocks the signals, which is before
      // it builds a machine and says which accelerator it uses.
      EXPECT_EQ(r.signal, signal) << log;
      EXPECT_EQ(r.err, "") << "hostvisor was killed by the signal after it had started the run" << log;
      killed_before_the_run++;
      continue;
    }
    EXPECT_EQ(r.exit_status, 0) << "a stop signal is a clean stop" << log;
    EXPECT_NE(r.err.find(std::string("stopped by ") + ::strsignal(signal)), std::string::npos) << log;
    if (count_occurrences(r.err, "rebooting") > 0) clean_after_reboots++;
  }
  // The scatter must really have hit the reboot phase of many runs, or the
  // test would not test what it says.
  EXPECT_GE(clean_after_reboots, runs / 3);
  std::printf("%d runs: %d stopped cleanly after reboots, %d killed before the run began; slowest exit %lld ms\n", runs,
              clean_after_reboots, killed_before_the_run, static_cast<long long>(slowest_exit.count()));
}

INSTANTIATE_TEST_SUITE_P(Guests, StopSignalTest, ::testing::Values("emu", "kvm"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace hostvisor::testing
