#include "sandbox/seccomp/thread_filter.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/sysinfo.h>
#include <seccomp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "sandbox/seccomp/allow_lists.h"
#include "sandbox/seccomp/forbidden_syscall_report.h"

namespace hostvisor::sandbox {

namespace {

std::atomic<SeccompMode> g_mode{SeccompMode::kOff};

// The name top -H and the kernel's log (comm=) show: "hv-vcpu", ...
void name_thread(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kSetup:
    case ThreadKind::kSwitchProcess:
    case ThreadKind::kDaemon: return;  // the process's own name stays
    default: break;
  }
  char name[16];
  std::snprintf(name, sizeof(name), "hv-%s", thread_kind_name(kind));
  pthread_setname_np(pthread_self(), name);
}

struct FilterContext {
  scmp_filter_ctx ctx;
  explicit FilterContext(uint32_t default_action) : ctx(seccomp_init(default_action)) {}
  ~FilterContext() {
    if (ctx) seccomp_release(ctx);
  }
};

Error libseccomp_error(const char* what, ThreadKind kind, int rc) {
  return Error(ErrorCode::kIo, std::string("seccomp: ") + what + " for the " + thread_kind_name(kind) +
                                   " filter: " + std::strerror(-rc));
}

}  // namespace

void set_process_seccomp_mode(SeccompMode mode) {
  g_mode = mode;
  // glibc loads the time zone (/etc/localtime) at the process's first time
  // conversion, gmtime_r included, on whichever thread makes it: the CMOS
  // RTC's on a vCPU, which may open no file. Loaded now, before any filter.
  ::tzset();
  // glibc's malloc, the first time a process has more threads than its
  // first 8 arenas serve, sizes its arena limit from the CPU count it reads
  // in /sys/devices/system/cpu/online, on whichever thread needs the arena:
  // a worker that may open no file. Set now (glibc's own default: 8 per
  // CPU), the limit is never read from there.
  if (mode != SeccompMode::kOff) ::mallopt(M_ARENA_MAX, 8 * std::max(1, ::get_nprocs()));
  if (mode == SeccompMode::kKill) install_forbidden_syscall_reporter();
  if (mode == SeccompMode::kLog)
    std::fprintf(stderr,
                 "hostvisor: seccomp: log mode: a call outside a thread's filter goes ahead and the kernel logs it "
                 "(dmesg | grep 'type=1326')\n");
}

SeccompMode process_seccomp_mode() { return g_mode; }

Result<void> try_install_thread_filter(ThreadKind kind) {
  const SeccompMode mode = g_mode;
  if (mode == SeccompMode::kOff) return {};
  name_thread(kind);
  const AllowList list = allow_list(kind);
  FilterContext filter(mode == SeccompMode::kKill ? SCMP_ACT_TRAP : SCMP_ACT_LOG);
  if (!filter.ctx)
    return Error(ErrorCode::kIo,
                 std::string("seccomp: cannot start the ") + thread_kind_name(kind) + " filter (libseccomp)");
  // A binary tree of the calls rather than a list: the vCPU's hot calls
  // (ioctl, futex, write) are found in a few comparisons.
  seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (const AllowRule& rule : list.rules) {
    std::vector<scmp_arg_cmp> comparisons;
    for (const ArgCondition& c : rule.when) {
      if (c.mask == ~uint64_t{0})
        comparisons.push_back(scmp_arg_cmp{c.arg, SCMP_CMP_EQ, c.equals, 0});
      else
        comparisons.push_back(scmp_arg_cmp{c.arg, SCMP_CMP_MASKED_EQ, c.mask, c.equals});
    }
    const int rc = seccomp_rule_add_array(filter.ctx, SCMP_ACT_ALLOW, rule.syscall,
                                          static_cast<unsigned>(comparisons.size()), comparisons.data());
    if (rc != 0) return libseccomp_error("adding a rule", kind, rc);
  }
  for (int call : list.enosys) {
    const int rc = seccomp_rule_add(filter.ctx, SCMP_ACT_ERRNO(ENOSYS), call, 0);
    if (rc != 0) return libseccomp_error("adding an ENOSYS rule", kind, rc);
  }
  HV_LOG_INFO("seccomp: thread {} installs the {} filter ({} rules, {} mode)", ::gettid(), thread_kind_name(kind),
              list.rules.size(), seccomp_mode_name(mode));
  set_reported_thread_kind(kind);
  if (const int rc = seccomp_load(filter.ctx); rc != 0) return libseccomp_error("loading", kind, rc);
  return {};
}

void install_thread_filter(ThreadKind kind) {
  if (auto installed = try_install_thread_filter(kind); !installed) {
    std::fprintf(stderr, "hostvisor: %s\n", installed.error().message().c_str());
    ::_exit(1);
  }
}

}  // namespace hostvisor::sandbox
