#include "vmm/stop_signals.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

namespace hostvisor {
namespace {

bool blocked(int signal) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, signal) == 1;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

// raise() sends to this thread, which blocks the signals once installed, so
// the signal waits for the signalfd instead of ending the test.
TEST(StopSignalsTest, TakesAStopSignalAndRemembersIt) {
  auto signals = StopSignals::install();
  ASSERT_TRUE(signals.ok()) << signals.error().message();
  StopSignals& s = **signals;
  EXPECT_EQ(s.take().stop_signal, 0);
  EXPECT_FALSE(readable(s.fd()));

  ASSERT_EQ(::raise(SIGTERM), 0);
  EXPECT_TRUE(readable(s.fd()));
  EXPECT_EQ(s.take().stop_signal, SIGTERM);
  EXPECT_FALSE(readable(s.fd()));
  // Read once, still reported: another reader cannot swallow it.
  EXPECT_EQ(s.take().stop_signal, SIGTERM);
  EXPECT_EQ(s.stop_signal(), SIGTERM);

  // The first one stays the one reported.
  ASSERT_EQ(::raise(SIGINT), 0);
  EXPECT_EQ(s.take().stop_signal, SIGTERM);
  EXPECT_FALSE(readable(s.fd()));
}

TEST(StopSignalsTest, WindowSizeChangesAreNoStop) {
  auto signals = StopSignals::install();
  ASSERT_TRUE(signals.ok()) << signals.error().message();
  ASSERT_EQ(::raise(SIGWINCH), 0);
  StopSignals::Taken taken = (*signals)->take();
  EXPECT_TRUE(taken.resized);
  EXPECT_EQ(taken.stop_signal, 0);
  taken = (*signals)->take();
  EXPECT_FALSE(taken.resized);

  ASSERT_EQ(::raise(SIGHUP), 0);
  ASSERT_EQ(::raise(SIGWINCH), 0);
  taken = (*signals)->take();
  EXPECT_TRUE(taken.resized);
  EXPECT_EQ(taken.stop_signal, SIGHUP);
}

TEST(StopSignalsTest, BlocksWhileInstalledAndRestoresTheMask) {
  ASSERT_FALSE(blocked(SIGTERM));
  {
    auto signals = StopSignals::install();
    ASSERT_TRUE(signals.ok()) << signals.error().message();
    for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) EXPECT_TRUE(blocked(signal)) << signal;
  }
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) EXPECT_FALSE(blocked(signal)) << signal;
}

TEST(StopSignalsTest, ASignalPendingBeforeInstallIsTaken) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, nullptr), 0);
  ASSERT_EQ(::raise(SIGTERM), 0);
  {
    auto signals = StopSignals::install();
    ASSERT_TRUE(signals.ok()) << signals.error().message();
    EXPECT_EQ((*signals)->take().stop_signal, SIGTERM);
  }
  EXPECT_TRUE(blocked(SIGTERM));  // the mask from before install()
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGTERM));
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &term, nullptr), 0);
}

TEST(StopSignalsTest, DescribesTheStop) {
  EXPECT_EQ(StopSignals::describe_stop(SIGTERM), "stopped by Terminated");
  EXPECT_EQ(StopSignals::describe_stop(SIGINT), "stopped by Interrupt");
}

}  // namespace
}  // namespace hostvisor
