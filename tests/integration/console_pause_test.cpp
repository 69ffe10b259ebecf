// Ctrl-A p end to end, on each backend: `hostvisor run` boots the count
// kernel (tests/guests/scenarios/count.c), which prints "count 0", "count
// 1", ... on the serial port, and the test presses Ctrl-A p again and again
// while it prints. Each pause must say where vCPU 0 stopped (registers read
// while paused), nothing may be printed while paused, and with hostvisor's
// lines taken out the count must be unbroken: nothing lost or doubled. A
// stop while paused (Ctrl-A x, or a stop signal) must still end the run,
// cleanly and promptly.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>
#include <string>

#include "kvm_skip.h"
#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kTimeout{30};
const std::regex kPaused(R"(\r\n\[hostvisor: VM paused, vCPU 0 at rip 0x([0-9a-f]+); Ctrl-A p resumes\]\r\n)");
const std::string kResumed = "\r\n[hostvisor: VM resumed]\r\n";

class ConsolePauseTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "kvm") HV_SKIP_WITHOUT_DEV_KVM("the kvm console pause test");
  }

  // Starts the count kernel and waits until it has printed a few lines.
  void start(GuestConsole& console) {
    ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--kernel", std::string(HV_GUESTS_DIR) + "/count.elf64",
                               "--memory", "64M", "--accel", GetParam()}))
        << console.failure();
    ASSERT_TRUE(console.wait_for_text("count 20\n", kTimeout)) << console.failure();
  }

  // Ctrl-A p, then the pause line; checks vCPU 0's RIP and that nothing is
  // printed for `quiet`.
  void pause(GuestConsole& console, milliseconds quiet) {
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    auto line = console.wait_for_regex(kPaused, kTimeout);
    ASSERT_TRUE(line) << "no pause line: " << console.failure();
    EXPECT_NE(std::stoull((*line)[1].str(), nullptr, 16), 0u) << "vCPU 0's registers were not read while paused";
    const size_t at_pause = console.out().size();
    console.read_for(quiet);
    EXPECT_EQ(console.out().size(), at_pause) << "the guest printed while paused:\n"
                                              << console.out().substr(at_pause, 200);
  }
};

TEST_P(ConsolePauseTest, PausesAndResumesWithAnUnbrokenCountThenCtrlAXEndsThePausedRun) {
  const int cycles = GetParam() == "kvm" ? 15 : 40;  // kvm_pvm runs ~1M guest instructions a second
  GuestConsole console;
  start(console);
  if (HasFatalFailure()) return;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    pause(console, milliseconds(cycle % 5 == 0 ? 200 : 20));
    if (HasFatalFailure()) return;
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    ASSERT_TRUE(console.wait_for_text(kResumed, kTimeout)) << "no resume line: " << console.failure();
    const size_t resumed_at = console.out().size();
    // It goes on counting after each resume.
    for (auto deadline = std::chrono::steady_clock::now() + kTimeout;
         console.out().size() < resumed_at + 40 && std::chrono::steady_clock::now() < deadline;)
      console.read_for(milliseconds(5));
    ASSERT_GE(console.out().size(), resumed_at + 40) << "the guest did not continue after resume " << cycle;
  }
  pause(console, milliseconds(50));
  if (HasFatalFailure()) return;
  ASSERT_TRUE(console.send_keys("\x01x")) << console.failure();
  const auto status = console.wait_exit(seconds(10));
  ASSERT_TRUE(status) << "Ctrl-A x while paused: " << console.failure();
  EXPECT_EQ(*status, 0) << console.err();

  std::string output = std::regex_replace(console.out(), kPaused, "");
  for (size_t at; (at = output.find(kResumed)) != std::string::npos;) output.erase(at, kResumed.size());
  output.erase(std::remove(output.begin(), output.end(), '\r'), output.end());
  const size_t first = output.find("count 0\n");
  ASSERT_NE(first, std::string::npos) << output.substr(0, 500);
  std::istringstream lines(output.substr(first, output.rfind('\n') + 1 - first));  // the last line may be cut off
  uint64_t expected = 0;
  for (std::string line; std::getline(lines, line); ++expected)
    ASSERT_EQ(line, "count " + std::to_string(expected)) << "after " << expected << " lines";
  std::printf("%s: %d pauses, %llu lines counted\n", GetParam().c_str(), cycles,
              static_cast<unsigned long long>(expected));
}

TEST_P(ConsolePauseTest, AStopSignalWhilePausedEndsTheRun) {
  GuestConsole console;
  start(console);
  if (HasFatalFailure()) return;
  pause(console, milliseconds(50));
  if (HasFatalFailure()) return;
  const auto signalled = std::chrono::steady_clock::now();
  ASSERT_TRUE(console.send_signal(SIGTERM));
  const auto status = console.wait_exit(seconds(10));
  ASSERT_TRUE(status) << "SIGTERM while paused: " << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, seconds(3));
  EXPECT_NE(console.err().find("stopped by Terminated"), std::string::npos) << console.err();
}

INSTANTIATE_TEST_SUITE_P(Backends, ConsolePauseTest, ::testing::Values("emu", "kvm"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace hostvisor::testing
