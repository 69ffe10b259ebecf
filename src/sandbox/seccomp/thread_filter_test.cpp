#include "sandbox/seccomp/thread_filter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>
#include <vector>

extern char** environ;

namespace hostvisor::sandbox {
namespace {

// Each case runs in a child (gtest's death tests fork): a filter stays on
// its thread, and a kill ends the whole process.
void on_thread(ThreadKind kind, void (*body)()) {
  std::thread([kind, body] {
    install_thread_filter(kind);
    body();
  }).join();
}

void open_an_inet_socket_and_exit() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::_Exit(fd >= 0 ? 0 : 1);
}

TEST(SeccompThreadFilterDeathTest, KillModeNamesTheVcpuThreadsForbiddenSocketCallAndEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, open_an_inet_socket_and_exit);
      },
      testing::ExitedWithCode(kForbiddenSyscallStatus),
      "hostvisor: seccomp: thread vcpu made forbidden syscall socket \\(41\\)");
}

TEST(SeccompThreadFilterDeathTest, AVcpusForbiddenOpenNamesThePathItWanted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, [] {
          ::open("/etc/hostname", O_RDONLY | O_CLOEXEC);
          std::_Exit(1);
        });
      },
      testing::ExitedWithCode(kForbiddenSyscallStatus),
      "thread vcpu made forbidden syscall openat \\(257\\) path /etc/hostname at 0x[0-9a-f]+");
}

// glibc's malloc reads /proc/sys/vm/overcommit_memory the first time it
// shrinks a thread arena's heap, on whichever thread frees: a vCPU's, in
// the middle of a guest's boot (CI saw it end a VM). The open is refused,
// glibc keeps its default, and the thread goes on.
TEST(SeccompThreadFilterDeathTest, AVcpuWhoseFreeMakesGlibcTrimItsArenaGoesOn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, [] {
          // The thread's first allocation gives it an arena of its own;
          // blocks below the mmap threshold come from that arena's heap,
          // and freeing them leaves a top chunk above the trim threshold.
          std::vector<void*> blocks;
          for (int i = 0; i < 64; ++i) blocks.push_back(std::malloc(64 * 1024));
          for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) std::free(*it);
          // The same refusal, asked directly.
          errno = 0;
          const int fd = ::open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
          std::_Exit(fd == -1 && errno == EACCES ? 0 : 1);
        });
      },
      testing::ExitedWithCode(0), "");
}

TEST(SeccompThreadFilterDeathTest, KillModeStopsAVcpuFromStartingAProgram) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, [] {
          char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
          ::execve("/bin/true", argv, environ);
          std::_Exit(1);
        });
      },
      testing::ExitedWithCode(kForbiddenSyscallStatus), "thread vcpu made forbidden syscall execve \\(59\\)");
}

TEST(SeccompThreadFilterDeathTest, KillModeStopsAVcpuFromMappingExecutableMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, [] {
          // Writable memory is fine; executable memory is not.
          void* data = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          if (data == MAP_FAILED) std::_Exit(1);
          ::mprotect(data, 4096, PROT_READ | PROT_EXEC);
          std::_Exit(1);
        });
      },
      testing::ExitedWithCode(kForbiddenSyscallStatus), "thread vcpu made forbidden syscall mprotect \\(10\\)");
}

TEST(SeccompThreadFilterDeathTest, LogModeLetsTheForbiddenCallGoAheadAndSaysSoAtStart) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kLog);
        on_thread(ThreadKind::kVcpu, open_an_inet_socket_and_exit);
      },
      testing::ExitedWithCode(0), "seccomp: log mode");
}

TEST(SeccompThreadFilterDeathTest, AnIoWorkerStartedByAVcpuThreadIsHeldToItsOwnNarrowerFilter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        on_thread(ThreadKind::kVcpu, [] {
          // A unix socket is the vCPU's to make (a guest's vsock
          // connection), not an I/O worker's, though it inherits the
          // vCPU's filter.
          if (::socket(AF_UNIX, SOCK_STREAM, 0) < 0) std::_Exit(1);
          on_thread(ThreadKind::kIoWorker, [] {
            ::socket(AF_UNIX, SOCK_STREAM, 0);
            std::_Exit(1);
          });
        });
      },
      testing::ExitedWithCode(kForbiddenSyscallStatus), "thread io-worker made forbidden syscall socket \\(41\\)");
}

TEST(SeccompThreadFilterDeathTest, AllowedWorkRunsToTheEndUnderEachFilter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        set_process_seccomp_mode(SeccompMode::kKill);
        int pipe_fds[2];
        if (::pipe(pipe_fds) != 0) std::_Exit(1);
        static int write_end;
        write_end = pipe_fds[1];
        on_thread(ThreadKind::kVcpu, [] {
          // A thread of its own (clone3 says ENOSYS, clone is used), a
          // write, RW memory, then the io-worker beneath it.
          on_thread(ThreadKind::kIoWorker, [] {
            void* data = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (data == MAP_FAILED || ::pwrite(write_end, "x", 1, 0) >= 0) {
              // pwrite on a pipe fails with ESPIPE, but is allowed.
            }
            ::munmap(data, 1 << 20);
            if (::write(write_end, "ok", 2) != 2) std::_Exit(1);
          });
        });
        on_thread(ThreadKind::kSetup, [] {
          // Set-up spawns a network's switch.
          pid_t pid;
          char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
          if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) std::_Exit(1);
          int status = 0;
          ::waitpid(pid, &status, 0);
          std::_Exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1);
        });
      },
      testing::ExitedWithCode(0), "");
}

TEST(SeccompMode, ParsesTheThreeModesAndRefusesOthers) {
  EXPECT_EQ(*parse_seccomp_mode("kill"), SeccompMode::kKill);
  EXPECT_EQ(*parse_seccomp_mode("log"), SeccompMode::kLog);
  EXPECT_EQ(*parse_seccomp_mode("off"), SeccompMode::kOff);
  auto bad = parse_seccomp_mode("trap");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "--seccomp trap: must be kill, log or off");
}

}  // namespace
}  // namespace hostvisor::sandbox
