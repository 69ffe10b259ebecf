#include "sandbox/seccomp/forbidden_syscall_report.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "sandbox/seccomp/seccomp_mode.h"

namespace hostvisor::sandbox {

namespace {

// x86-64's calls number below 512 (the newest are in the 460s).
constexpr int kSyscallNames = 512;
const char* g_syscall_names[kSyscallNames];

// -1: no filter of this thread's own (it runs under its creator's).
thread_local int t_kind = -1;

// Appends `text` to the line at `at`, within `end`.
char* append(char* at, char* end, const char* text) {
  while (*text && at < end) *at++ = *text++;
  return at;
}

char* append_number(char* at, char* end, long value) {
  char digits[24];
  int n = 0;
  const bool negative = value < 0;
  unsigned long magnitude = negative ? 0ul - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
  do {
    digits[n++] = static_cast<char>('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude > 0);
  if (negative && at < end) *at++ = '-';
  while (n > 0 && at < end) *at++ = digits[--n];
  return at;
}

// Only async-signal-safe work: a stack buffer, write(2), exit_group(2),
// both of which every filter allows.
char* append_hex(char* at, char* end, unsigned long value) {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  } while (value > 0);
  at = append(at, end, "0x");
  while (n > 0 && at < end) *at++ = digits[--n];
  return at;
}

void on_forbidden_syscall(int, siginfo_t* info, void* context) {
  const int nr = info->si_syscall;
  const char* name = nr >= 0 && nr < kSyscallNames && g_syscall_names[nr] ? g_syscall_names[nr] : "unknown";
  const char* kind = t_kind >= 0 ? thread_kind_name(static_cast<ThreadKind>(t_kind)) : "unfiltered";
  char line[320];
  char* end = line + sizeof(line) - 1;
  // \r first: the terminal may be in raw mode, and nothing restores it.
  char* at = append(line, end, "\r\nhostvisor: seccomp: thread ");
  at = append(at, end, kind);
  at = append(at, end, " made forbidden syscall ");
  at = append(at, end, name);
  at = append(at, end, " (");
  at = append_number(at, end, nr);
  at = append(at, end, ")");
  // An ioctl's filter is on its request: name the one refused.
  if (nr == SYS_ioctl && context) {
    at = append(at, end, " request ");
    at = append_hex(
        at, end,
        static_cast<unsigned long>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSI]) & 0xffffffffu);
  }
  // A file opened where none may be: the path says what wanted it (glibc
  // loading something lazily, as /etc/localtime once was).
  if ((nr == SYS_openat || nr == SYS_open) && context) {
    const greg_t* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
    const char* path = reinterpret_cast<const char*>(nr == SYS_openat ? regs[REG_RSI] : regs[REG_RDI]);
    at = append(at, end, " path ");
    for (int i = 0; path && path[i] && i < 96 && at < end; ++i) *at++ = path[i];
  }
  at = append(at, end, " at ");
  at = append_hex(at, end, reinterpret_cast<unsigned long>(info->si_call_addr));
  at = append(at, end, "\n");
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line, static_cast<size_t>(at - line));
  ::syscall(SYS_exit_group, kForbiddenSyscallStatus);
}

}  // namespace

void install_forbidden_syscall_reporter() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int nr = 0; nr < kSyscallNames; ++nr) {
      // Resolved once, kept for the process's life.
      g_syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    }
    struct sigaction action {};
    action.sa_sigaction = on_forbidden_syscall;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSYS, &action, nullptr);
  });
}

void set_reported_thread_kind(ThreadKind kind) { t_kind = static_cast<int>(kind); }

}  // namespace hostvisor::sandbox
