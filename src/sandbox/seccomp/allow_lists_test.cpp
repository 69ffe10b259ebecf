#include "sandbox/seccomp/allow_lists.h"

#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>

#include "hv/kvm/kvm_abi.h"

namespace hostvisor::sandbox {
namespace {

bool allows_always(const AllowList& list, int call) {
  return std::any_of(list.rules.begin(), list.rules.end(),
                     [&](const AllowRule& r) { return r.syscall == call && r.when.empty(); });
}

bool has_rule(const AllowList& list, const AllowRule& rule) {
  return std::any_of(list.rules.begin(), list.rules.end(),
                     [&](const AllowRule& r) { return r.syscall == rule.syscall && r.when == rule.when; });
}

// Every call `inner` lets through, `outer` lets through too: so a thread
// under both (it inherited `outer`) can do all its own kind allows.
void expect_covers(ThreadKind outer_kind, ThreadKind inner_kind) {
  const AllowList outer = allow_list(outer_kind), inner = allow_list(inner_kind);
  for (const AllowRule& rule : inner.rules)
    EXPECT_TRUE(allows_always(outer, rule.syscall) || has_rule(outer, rule))
        << thread_kind_name(inner_kind) << " allows syscall " << rule.syscall << " where "
        << thread_kind_name(outer_kind) << ", which it runs under, does not";
  for (int call : inner.enosys)
    EXPECT_TRUE(allows_always(outer, call) ||
                std::find(outer.enosys.begin(), outer.enosys.end(), call) != outer.enosys.end())
        << thread_kind_name(outer_kind) << " traps syscall " << call << " that " << thread_kind_name(inner_kind)
        << " answers ENOSYS";
}

TEST(SeccompAllowLists, EveryThreadOfTheVmProcessAndItsSwitchFitUnderTheSetupFilter) {
  for (ThreadKind kind : {ThreadKind::kVcpu, ThreadKind::kEventLoop, ThreadKind::kIoWorker, ThreadKind::kShareWorker,
                          ThreadKind::kControl, ThreadKind::kSwitchProcess})
    expect_covers(ThreadKind::kSetup, kind);
}

TEST(SeccompAllowLists, LazilyStartedIoWorkersFitUnderTheVcpuAndEventLoopThatStartThem) {
  expect_covers(ThreadKind::kVcpu, ThreadKind::kIoWorker);
  expect_covers(ThreadKind::kEventLoop, ThreadKind::kIoWorker);
}

TEST(SeccompAllowLists, TheDaemonsVmProcessesStartUnderItsFilter) {
  expect_covers(ThreadKind::kDaemon, ThreadKind::kSetup);
}

TEST(SeccompAllowLists, OnlySetUpMakesMemoryExecutableStartsProgramsOrCreatesVms) {
  for (ThreadKind kind : {ThreadKind::kVcpu, ThreadKind::kEventLoop, ThreadKind::kIoWorker, ThreadKind::kShareWorker,
                          ThreadKind::kControl, ThreadKind::kSwitchProcess}) {
    const AllowList list = allow_list(kind);
    SCOPED_TRACE(thread_kind_name(kind));
    for (int call : {SCMP_SYS(mmap), SCMP_SYS(mprotect)}) {
      EXPECT_FALSE(allows_always(list, call));
      EXPECT_TRUE(has_rule(list, {call, {{.arg = 2, .mask = PROT_EXEC, .equals = 0}}}));
    }
    for (int call : {SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(clone3),
                     SCMP_SYS(ioctl), SCMP_SYS(socket), SCMP_SYS(ptrace), SCMP_SYS(mount), SCMP_SYS(bpf)})
      EXPECT_FALSE(allows_always(list, call)) << call;
    EXPECT_FALSE(has_rule(list, {SCMP_SYS(ioctl), {{.arg = 1, .mask = 0xffffffffu, .equals = KVM_CREATE_VM}}}));
    EXPECT_FALSE(has_rule(list, {SCMP_SYS(ioctl), {{.arg = 1, .mask = 0xffffffffu, .equals = KVM_CREATE_VCPU}}}));
  }
  const AllowList setup = allow_list(ThreadKind::kSetup);
  for (int call : {SCMP_SYS(process_vm_writev), SCMP_SYS(mount), SCMP_SYS(bpf), SCMP_SYS(init_module),
                   SCMP_SYS(kexec_load), SCMP_SYS(userfaultfd), SCMP_SYS(perf_event_open)})
    EXPECT_FALSE(allows_always(setup, call)) << call;
  // Only a LeakSanitizer build's set-up may ptrace (its leak check at exit).
  EXPECT_EQ(allows_always(setup, SCMP_SYS(ptrace)), kLeakSanitizerAtExit);
}

TEST(SeccompAllowLists, KvmIoctlsOnlyOnThreadsThatRunOrSaveVcpusAndIoWorkersHaveNone) {
  const AllowRule run{SCMP_SYS(ioctl), {{.arg = 1, .mask = 0xffffffffu, .equals = KVM_RUN}}};
  EXPECT_TRUE(has_rule(allow_list(ThreadKind::kVcpu), run));
  EXPECT_TRUE(has_rule(allow_list(ThreadKind::kEventLoop), run));  // a snapshot's pause
  EXPECT_FALSE(has_rule(allow_list(ThreadKind::kShareWorker), run));
  for (const AllowRule& rule : allow_list(ThreadKind::kIoWorker).rules) EXPECT_NE(rule.syscall, SCMP_SYS(ioctl));
}

// The KVM backend's ioctl numbers for structs with a flexible array are the
// ones the lists allow: a state save on KVM (KVM_GET_XSAVE, KVM_GET_MSRS)
// was once refused because C++ sizes <linux/kvm.h>'s structs otherwise.
TEST(SeccompAllowLists, KvmIoctlNumbersAreTheBackendsOwn) {
  EXPECT_EQ(kKvmGetMsrsNumber, kvm::kKvmGetMsrs);
  EXPECT_EQ(kKvmSetMsrsNumber, kvm::kKvmSetMsrs);
  EXPECT_EQ(kKvmSetGsiRoutingNumber, kvm::kKvmSetGsiRouting);
  EXPECT_EQ(kKvmGetXsaveNumber, kvm::kKvmGetXsave);
  EXPECT_EQ(kKvmSetXsaveNumber, kvm::kKvmSetXsave);
  EXPECT_EQ(kKvmGetXsave2Number, kvm::kKvmGetXsave2);
  const AllowList vcpu = allow_list(ThreadKind::kVcpu);
  for (unsigned long request : {kvm::kKvmGetMsrs, kvm::kKvmSetMsrs, kvm::kKvmGetXsave, kvm::kKvmSetXsave})
    EXPECT_TRUE(has_rule(vcpu, {SCMP_SYS(ioctl), {{.arg = 1, .mask = 0xffffffffu, .equals = request}}})) << std::hex
                                                                                                          << request;
}

TEST(SeccompAllowLists, VcpusOpenNoFilesAndOnlyUnixSockets) {
  const AllowList vcpu = allow_list(ThreadKind::kVcpu);
  EXPECT_FALSE(allows_always(vcpu, SCMP_SYS(openat)));
  EXPECT_FALSE(allows_always(vcpu, SCMP_SYS(open)));
  EXPECT_TRUE(has_rule(vcpu, {SCMP_SYS(socket), {{.arg = 0, .equals = AF_UNIX}}}));
  EXPECT_FALSE(has_rule(vcpu, {SCMP_SYS(socket), {{.arg = 0, .equals = AF_INET}}}));
}

}  // namespace
}  // namespace hostvisor::sandbox
