#include "sandbox/seccomp/allow_lists.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <initializer_list>

namespace hostvisor::sandbox {

namespace {

// The kernel takes an ioctl's request as a 32-bit unsigned int; the upper
// half of the register is not looked at, so neither is it here.
constexpr uint64_t kIoctlRequestMask = 0xffffffffu;

void allow(AllowList& list, std::initializer_list<int> calls) {
  for (int call : calls) list.rules.push_back({call, {}});
}

void allow_when(AllowList& list, int call, ArgCondition condition) { list.rules.push_back({call, {condition}}); }

void allow_ioctls(AllowList& list, std::initializer_list<unsigned long> requests) {
  for (unsigned long request : requests)
    allow_when(list, SCMP_SYS(ioctl), {.arg = 1, .mask = kIoctlRequestMask, .equals = request & kIoctlRequestMask});
}

void allow_socket_families(AllowList& list, std::initializer_list<int> families) {
  for (int family : families) allow_when(list, SCMP_SYS(socket), {.arg = 0, .equals = static_cast<uint64_t>(family)});
}

// What every thread does: the C and C++ run-times (malloc, threads and
// their ends, locks, clocks, sleeps, signals' returns), logging to stderr,
// and reads and writes on descriptors it was handed. Memory is never made
// executable (the software CPU's code cache is mapped at set-up).
void add_runtime(AllowList& list) {
  allow(list, {SCMP_SYS(read),
               SCMP_SYS(write),
               SCMP_SYS(readv),
               SCMP_SYS(writev),
               SCMP_SYS(close),
               SCMP_SYS(lseek),
               SCMP_SYS(fstat),
               SCMP_SYS(newfstatat),
               SCMP_SYS(statx),
               SCMP_SYS(fcntl),
               SCMP_SYS(futex),
               SCMP_SYS(exit),
               SCMP_SYS(exit_group),
               SCMP_SYS(rt_sigreturn),
               SCMP_SYS(rt_sigprocmask),
               SCMP_SYS(rt_sigaction),
               SCMP_SYS(sigaltstack),
               SCMP_SYS(restart_syscall),
               SCMP_SYS(sched_yield),
               SCMP_SYS(sched_getaffinity),
               SCMP_SYS(getpid),
               SCMP_SYS(gettid),
               SCMP_SYS(getppid),
               SCMP_SYS(getuid),
               SCMP_SYS(geteuid),
               SCMP_SYS(getgid),
               SCMP_SYS(getegid),
               SCMP_SYS(clock_gettime),
               SCMP_SYS(clock_getres),
               SCMP_SYS(gettimeofday),
               SCMP_SYS(time),
               SCMP_SYS(nanosleep),
               SCMP_SYS(clock_nanosleep),
               SCMP_SYS(brk),
               SCMP_SYS(munmap),
               SCMP_SYS(mremap),
               SCMP_SYS(madvise),
               SCMP_SYS(rseq),
               SCMP_SYS(set_robust_list),
               SCMP_SYS(getrandom),
               SCMP_SYS(tgkill),
               SCMP_SYS(getcpu),
               SCMP_SYS(membarrier)});
  allow_when(list, SCMP_SYS(mmap), {.arg = 2, .mask = PROT_EXEC, .equals = 0});
  allow_when(list, SCMP_SYS(mprotect), {.arg = 2, .mask = PROT_EXEC, .equals = 0});
  // Thread names (top -H, and the kernel's log of a call under --seccomp=log).
  allow_when(list, SCMP_SYS(prctl), {.arg = 0, .equals = PR_SET_NAME});
  allow_when(list, SCMP_SYS(prctl), {.arg = 0, .equals = PR_GET_NAME});
  // A thread this one starts installs its own filter beneath this one's:
  // no_new_privs (already set) and another filter only narrow what it may.
  allow_when(list, SCMP_SYS(prctl), {.arg = 0, .equals = PR_SET_NO_NEW_PRIVS});
  allow_when(list, SCMP_SYS(seccomp), {.arg = 0, .equals = SECCOMP_SET_MODE_FILTER});
  allow_when(list, SCMP_SYS(seccomp), {.arg = 0, .equals = SECCOMP_GET_ACTION_AVAIL});
  // New threads of this process, never a process: glibc's pthread_create
  // falls back to clone, whose flags the filter can read, when clone3
  // says ENOSYS.
  allow_when(list, SCMP_SYS(clone), {.arg = 0, .mask = CLONE_THREAD, .equals = CLONE_THREAD});
  list.enosys.push_back(SCMP_SYS(clone3));
}

// Waiting on and moving data through descriptors the thread already holds:
// epoll, eventfds, timerfds, files, sockets, io_uring submissions.
void add_descriptor_io(AllowList& list) {
  allow(list, {SCMP_SYS(epoll_wait),    SCMP_SYS(epoll_pwait),    SCMP_SYS(epoll_pwait2),    SCMP_SYS(epoll_ctl),
               SCMP_SYS(epoll_create1), SCMP_SYS(poll),           SCMP_SYS(ppoll),           SCMP_SYS(pselect6),
               SCMP_SYS(eventfd2),      SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime),
               SCMP_SYS(pread64),       SCMP_SYS(pwrite64),       SCMP_SYS(preadv),          SCMP_SYS(pwritev),
               SCMP_SYS(preadv2),       SCMP_SYS(pwritev2),       SCMP_SYS(fsync),           SCMP_SYS(fdatasync),
               SCMP_SYS(fallocate),     SCMP_SYS(ftruncate),      SCMP_SYS(sendto),          SCMP_SYS(recvfrom),
               SCMP_SYS(sendmsg),       SCMP_SYS(recvmsg),        SCMP_SYS(sendmmsg),        SCMP_SYS(recvmmsg),
               SCMP_SYS(shutdown),      SCMP_SYS(getsockopt),     SCMP_SYS(setsockopt),      SCMP_SYS(getsockname),
               SCMP_SYS(getpeername),   SCMP_SYS(io_uring_enter), SCMP_SYS(pipe2),           SCMP_SYS(dup)});
}

// Running vCPUs and raising their interrupts, on KVM: KVM_RUN, a vCPU's
// state (a pause reads it, a snapshot saves it), the VM's interrupt
// routes, irqfds, ioeventfds and memory slots (a guest moving a BAR or
// programming MSI-X), its clock and in-kernel chips. Creating VMs and vCPUs
// is set-up's alone.
// An ioctl's number encodes the size of its struct. <linux/kvm.h> ends
// some in a flexible array that C sizes as nothing but C++ compilers here
// size otherwise (kvm_xsave is 4100 bytes in C++, kvm_msrs 16): their
// numbers are computed from the C layout, as the kernel and the KVM backend
// (hv/kvm/kvm_abi.h, which allow_lists_test.cpp compares them with) use.
// This host's header's KVM_SET_GSI_ROUTING (16) is allowed as well.
struct KvmHeader8 {  // kvm_msrs, kvm_irq_routing: two u32s, then the entries
  uint32_t first, second;
};
struct KvmXsave {  // kvm_xsave: its 4096-byte region
  uint32_t region[1024];
};
}  // namespace

const unsigned long kKvmGetMsrsNumber = _IOWR(KVMIO, 0x88, KvmHeader8);
const unsigned long kKvmSetMsrsNumber = _IOW(KVMIO, 0x89, KvmHeader8);
const unsigned long kKvmSetGsiRoutingNumber = _IOW(KVMIO, 0x6a, KvmHeader8);
const unsigned long kKvmGetXsaveNumber = _IOR(KVMIO, 0xa4, KvmXsave);
const unsigned long kKvmSetXsaveNumber = _IOW(KVMIO, 0xa5, KvmXsave);
const unsigned long kKvmGetXsave2Number = _IOR(KVMIO, 0xcf, KvmXsave);

namespace {

void add_kvm_runtime_ioctls(AllowList& list) {
  allow_ioctls(list, {kKvmGetMsrsNumber, kKvmSetMsrsNumber, kKvmSetGsiRoutingNumber, kKvmGetXsaveNumber,
                      kKvmSetXsaveNumber, kKvmGetXsave2Number});
  allow_ioctls(list, {KVM_RUN,
                      KVM_GET_REGS,
                      KVM_SET_REGS,
                      KVM_GET_SREGS,
                      KVM_SET_SREGS,
                      KVM_GET_FPU,
                      KVM_SET_FPU,
                      KVM_GET_LAPIC,
                      KVM_SET_LAPIC,
                      KVM_GET_XCRS,
                      KVM_SET_XCRS,
                      KVM_GET_VCPU_EVENTS,
                      KVM_SET_VCPU_EVENTS,
                      KVM_GET_MP_STATE,
                      KVM_SET_MP_STATE,
                      KVM_GET_TSC_KHZ,
                      KVM_SET_TSC_KHZ,
                      KVM_GET_DEVICE_ATTR,
                      KVM_SET_DEVICE_ATTR,
                      KVM_HAS_DEVICE_ATTR,
                      KVM_CHECK_EXTENSION,
                      KVM_IRQ_LINE,
                      KVM_IRQ_LINE_STATUS,
                      KVM_SIGNAL_MSI,
                      KVM_SET_GSI_ROUTING,
                      KVM_IRQFD,
                      KVM_IOEVENTFD,
                      KVM_SET_USER_MEMORY_REGION,
                      KVM_GET_CLOCK,
                      KVM_SET_CLOCK,
                      KVM_GET_IRQCHIP,
                      KVM_SET_IRQCHIP,
                      KVM_GET_PIT2,
                      KVM_SET_PIT2});
}

// A tap's offloads follow what the guest's driver negotiates.
void add_tap_runtime_ioctls(AllowList& list) { allow_ioctls(list, {TUNSETOFFLOAD, TUNGETIFF, FIONBIO, FIONREAD}); }

// The terminal the console runs on: raw mode in and out, its size.
void add_terminal_ioctls(AllowList& list) { allow_ioctls(list, {TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ}); }

// Opening and changing files by path: snapshots (their directory, the
// atomic rename), disk overlays, the console log's rotation.
void add_path_files(AllowList& list) {
  allow(list, {SCMP_SYS(openat),          SCMP_SYS(openat2),    SCMP_SYS(open),
               SCMP_SYS(mkdirat),         SCMP_SYS(mkdir),      SCMP_SYS(unlinkat),
               SCMP_SYS(unlink),          SCMP_SYS(rmdir),      SCMP_SYS(renameat),
               SCMP_SYS(renameat2),       SCMP_SYS(rename),     SCMP_SYS(linkat),
               SCMP_SYS(symlinkat),       SCMP_SYS(readlinkat), SCMP_SYS(readlink),
               SCMP_SYS(getdents64),      SCMP_SYS(faccessat),  SCMP_SYS(faccessat2),
               SCMP_SYS(access),          SCMP_SYS(stat),       SCMP_SYS(lstat),
               SCMP_SYS(fstatfs),         SCMP_SYS(statfs),     SCMP_SYS(fchmod),
               SCMP_SYS(fchmodat),        SCMP_SYS(fchown),     SCMP_SYS(fchownat),
               SCMP_SYS(utimensat),       SCMP_SYS(flock),      SCMP_SYS(copy_file_range),
               SCMP_SYS(sync_file_range), SCMP_SYS(msync),      SCMP_SYS(memfd_create),
               SCMP_SYS(getcwd),          SCMP_SYS(umask),      SCMP_SYS(chmod),
               SCMP_SYS(chown),           SCMP_SYS(lchown),     SCMP_SYS(truncate),
               SCMP_SYS(utimes),          SCMP_SYS(link)});
  // Whether the process that left a snapshot's temporary directory still
  // runs: kill(pid, 0) sends nothing.
  allow_when(list, SCMP_SYS(kill), {.arg = 1, .equals = 0});
}

// Sockets of the families hostvisor speaks: unix (control, vsock, agent,
// switch ports) and IP (the NAT's connections out, host forwards).
void add_ip_and_unix_sockets(AllowList& list) {
  allow_socket_families(list, {AF_UNIX, AF_INET, AF_INET6});
  allow(list, {SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept), SCMP_SYS(accept4),
               SCMP_SYS(socketpair)});
}

AllowList vcpu_list() {
  AllowList list;
  add_runtime(list);
  add_descriptor_io(list);
  add_kvm_runtime_ioctls(list);
  add_tap_runtime_ioctls(list);
  // A guest's vsock connection to host port P connects to the listener at
  // PATH_P, from the vCPU that queued it.
  allow_socket_families(list, {AF_UNIX});
  allow(list, {SCMP_SYS(connect)});
  return list;
}

// The event loop and the control socket do the same things from two
// doors (a console key, a control request): pause, snapshot, reset, a
// host forward added, a console attached.
AllowList event_loop_list() {
  AllowList list;
  add_runtime(list);
  add_descriptor_io(list);
  add_kvm_runtime_ioctls(list);
  add_tap_runtime_ioctls(list);
  add_terminal_ioctls(list);
  add_path_files(list);
  add_ip_and_unix_sockets(list);
  // A snapshot reopens the disks on fresh overlays: new I/O engines.
  allow(list, {SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_register)});
  // The control socket's metrics: the process's CPU time and memory.
  allow(list, {SCMP_SYS(getrusage), SCMP_SYS(times), SCMP_SYS(sysinfo)});
  return list;
}

AllowList io_worker_list() {
  AllowList list;
  add_runtime(list);
  add_descriptor_io(list);
  return list;
}

AllowList share_worker_list() {
  AllowList list;
  add_runtime(list);
  add_descriptor_io(list);
  add_path_files(list);
  allow(list, {SCMP_SYS(mknodat), SCMP_SYS(fchdir), SCMP_SYS(fgetxattr), SCMP_SYS(fsetxattr), SCMP_SYS(flistxattr),
               SCMP_SYS(fremovexattr), SCMP_SYS(getxattr), SCMP_SYS(lgetxattr), SCMP_SYS(setxattr), SCMP_SYS(lsetxattr),
               SCMP_SYS(listxattr), SCMP_SYS(llistxattr), SCMP_SYS(removexattr), SCMP_SYS(lremovexattr),
               SCMP_SYS(fadvise64), SCMP_SYS(lseek), SCMP_SYS(syncfs)});
  // A finished request's interrupt, raised from the worker.
  allow_ioctls(list, {KVM_SIGNAL_MSI, KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS});
  return list;
}

AllowList switch_list() {
  AllowList list;
  add_runtime(list);
  add_descriptor_io(list);
  add_path_files(list);
  add_ip_and_unix_sockets(list);
  // A host-only network's server: its bridge's and taps' flags and
  // addresses, through netlink and the SIOC ioctls.
  allow_socket_families(list, {AF_NETLINK});
  allow_ioctls(list, {SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFINDEX, SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFMTU, FIONBIO,
                      FIONREAD, TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNGETIFF,
                      // its bridge, removed when the last VM leaves
                      SIOCBRADDBR, SIOCBRDELBR, SIOCBRADDIF, SIOCBRDELIF,
                      // whether its CAP_NET_ADMIN reaches its network namespace (has_net_admin)
                      NS_GET_USERNS});
  allow(list, {SCMP_SYS(wait4), SCMP_SYS(kill), SCMP_SYS(signalfd4), SCMP_SYS(getrusage), SCMP_SYS(sysinfo)});
  return list;
}

// Set-up does what the threads do and what only it does: open /dev/kvm and
// create the VM and its vCPUs, map guest RAM (locked, populated, on huge
// pages), open every disk, tap and socket, map the software CPU's code
// cache executable, spawn a network's switch (posix_spawn: clone, execve;
// the new program's loader maps its libraries), wait for it, and confine
// itself further (Landlock, capabilities). What it leaves out is what
// hostvisor never does: debugging or reading other processes (ptrace,
// process_vm_*), kernel modules, kexec, reboot, mounts and namespaces,
// BPF, perf, keyrings, userfaultfd, the clock's setting, swap.
AllowList setup_list() {
  AllowList list = event_loop_list();
  for (const AllowRule& rule : share_worker_list().rules) list.rules.push_back(rule);
  for (const AllowRule& rule : switch_list().rules) list.rules.push_back(rule);
  allow(list, {SCMP_SYS(ioctl),
               SCMP_SYS(socket),
               SCMP_SYS(mmap),
               SCMP_SYS(mprotect),
               SCMP_SYS(prctl),
               SCMP_SYS(clone),
               SCMP_SYS(clone3),
               SCMP_SYS(vfork),
               SCMP_SYS(fork),
               SCMP_SYS(execve),
               SCMP_SYS(execveat),
               SCMP_SYS(wait4),
               SCMP_SYS(waitid),
               SCMP_SYS(kill),
               SCMP_SYS(setsid),
               SCMP_SYS(setpgid),
               SCMP_SYS(getpgid),
               SCMP_SYS(getpgrp),
               SCMP_SYS(getsid),
               SCMP_SYS(dup2),
               SCMP_SYS(dup3),
               SCMP_SYS(pipe),
               SCMP_SYS(close_range),
               SCMP_SYS(chdir),
               SCMP_SYS(fchdir),
               SCMP_SYS(set_tid_address),
               SCMP_SYS(arch_prctl),
               SCMP_SYS(getrlimit),
               SCMP_SYS(setrlimit),
               SCMP_SYS(prlimit64),
               SCMP_SYS(getrusage),
               SCMP_SYS(times),
               SCMP_SYS(uname),
               SCMP_SYS(sysinfo),
               SCMP_SYS(sched_setaffinity),
               SCMP_SYS(sched_getparam),
               SCMP_SYS(sched_getscheduler),
               SCMP_SYS(mlock),
               SCMP_SYS(mlock2),
               SCMP_SYS(munlock),
               SCMP_SYS(mlockall),
               SCMP_SYS(munlockall),
               SCMP_SYS(mincore),
               SCMP_SYS(get_mempolicy),
               SCMP_SYS(signalfd4),
               SCMP_SYS(inotify_init1),
               SCMP_SYS(inotify_add_watch),
               SCMP_SYS(inotify_rm_watch),
               SCMP_SYS(pidfd_open),
               SCMP_SYS(pidfd_send_signal),
               SCMP_SYS(io_uring_setup),
               SCMP_SYS(io_uring_register),
               SCMP_SYS(sendfile),
               SCMP_SYS(splice),
               SCMP_SYS(readahead),
               SCMP_SYS(chmod),
               SCMP_SYS(chown),
               SCMP_SYS(lchown),
               SCMP_SYS(truncate),
               SCMP_SYS(utime),
               SCMP_SYS(utimes),
               SCMP_SYS(futimesat),
               SCMP_SYS(symlink),
               SCMP_SYS(link),
               SCMP_SYS(getdents),
               SCMP_SYS(capget),
               SCMP_SYS(capset),
               SCMP_SYS(seccomp),
               SCMP_SYS(landlock_create_ruleset),
               SCMP_SYS(landlock_add_rule),
               SCMP_SYS(landlock_restrict_self),
               SCMP_SYS(getgroups),
               SCMP_SYS(setresuid),
               SCMP_SYS(setresgid),
               SCMP_SYS(getresuid),
               SCMP_SYS(getresgid),
               SCMP_SYS(set_mempolicy),
               SCMP_SYS(select),
               SCMP_SYS(alarm),
               SCMP_SYS(pause),
               SCMP_SYS(rt_sigsuspend),
               SCMP_SYS(rt_sigtimedwait),
               SCMP_SYS(rt_sigqueueinfo),
               SCMP_SYS(tkill),
               SCMP_SYS(setitimer),
               SCMP_SYS(getitimer),
               SCMP_SYS(timer_create),
               SCMP_SYS(timer_settime),
               SCMP_SYS(timer_delete),
               SCMP_SYS(timer_gettime),
               SCMP_SYS(eventfd),
               SCMP_SYS(epoll_create),
               SCMP_SYS(fadvise64),
               SCMP_SYS(mknodat),
               SCMP_SYS(mknod),
               SCMP_SYS(statfs)});
  list.enosys.clear();  // its threads and the switch it spawns may use clone3
  if constexpr (kLeakSanitizerAtExit) allow(list, {SCMP_SYS(ptrace)});  // allow_lists.h says why
  return list;
}

AllowList daemon_list() {
  // The daemon's VM processes and switches start under its filter, so it
  // holds everything set-up may do, and what a VM process does before its
  // own set-up filter: entering a jail (--jail: new namespaces, a private
  // root; docs/sandbox.md), which needs unshare, mounts and pivot_root.
  AllowList list = setup_list();
  allow(list, {SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root),
               SCMP_SYS(chroot), SCMP_SYS(sethostname), SCMP_SYS(setuid), SCMP_SYS(setgid), SCMP_SYS(setgroups)});
  return list;
}

}  // namespace

AllowList allow_list(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kSetup: return setup_list();
    case ThreadKind::kVcpu: return vcpu_list();
    case ThreadKind::kEventLoop: return event_loop_list();
    case ThreadKind::kIoWorker: return io_worker_list();
    case ThreadKind::kShareWorker: return share_worker_list();
    case ThreadKind::kControl: return event_loop_list();
    case ThreadKind::kSwitchProcess: return switch_list();
    case ThreadKind::kDaemon: return daemon_list();
  }
  return {};
}

}  // namespace hostvisor::sandbox
