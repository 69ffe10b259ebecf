#include "sandbox/seccomp/forbidden_syscall_report.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

// Files glibc opens lazily, once per process, on whichever thread first
// needs them, and does without when the open fails. malloc reads
// overcommit_memory the first time it shrinks a thread arena's heap (a
// vCPU's free can do that at any moment of a guest's life); with the open
// refused it keeps its default (release by MADV_DONTNEED). The CPU count
// feeds arena sizing and sysconf: set_process_seccomp_mode() fixes the one
// malloc needs, a failed read means one CPU to the rest. Refusing these
// (EACCES) rather than ending the VM is what keeps a library's lazy load
// from killing a guest at random; any other open is still fatal.
constexpr const char* kLazyLibcFiles[] = {"/proc/sys/vm/overcommit_memory", "/sys/devices/system/cpu/online"};

bool same(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

// The path of an open/openat the filter trapped, or null.
const char* opened_path(int nr, const ucontext_t* context) {
  if (!context || (nr != SYS_openat && nr != SYS_open)) return nullptr;
  const greg_t* regs = context->uc_mcontext.gregs;
  return reinterpret_cast<const char*>(nr == SYS_openat ? regs[REG_RSI] : regs[REG_RDI]);
}

bool is_lazy_libc_file(const char* path) {
  if (!path) return false;
  for (const char* file : kLazyLibcFiles)
    if (same(path, file)) return true;
  return false;
}

void on_forbidden_syscall(int, siginfo_t* info, void* context) {
  const int nr = info->si_syscall;
  auto* ucontext = static_cast<ucontext_t*>(context);
  const char* path = opened_path(nr, ucontext);
  if (is_lazy_libc_file(path)) {
    // The call did not run; returning resumes after it with this result.
    ucontext->uc_mcontext.gregs[REG_RAX] = -EACCES;
    return;
  }
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
  if (path) {
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
