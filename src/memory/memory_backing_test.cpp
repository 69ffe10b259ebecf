#include "memory/memory_backing.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "memory/guest_memory.h"
#include "memory/testing/hugetlb_pool.h"

namespace hostvisor {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// --- choosing the memory -----------------------------------------------------

TEST(MemoryBacking, EachOptionGetsTheMemoryItWorksOn) {
  EXPECT_EQ(*choose_memory_kind({}), MemoryKind::kPrivateAnonymous);
  // KSM and THP need private anonymous memory: no memfd for them.
  EXPECT_EQ(*choose_memory_kind({.huge_pages = HugePages::kTransparent}), MemoryKind::kPrivateAnonymous);
  EXPECT_EQ(*choose_memory_kind({.merge = true}), MemoryKind::kPrivateAnonymous);
  EXPECT_EQ(*choose_memory_kind({.lock = true, .prealloc = true}), MemoryKind::kPrivateAnonymous);
  EXPECT_EQ(*choose_memory_kind({.shared = true}), MemoryKind::kSharedMemfd);
  EXPECT_EQ(*choose_memory_kind({.huge_pages = HugePages::kHugetlb}), MemoryKind::kHugetlbMemfd);
  EXPECT_EQ(*choose_memory_kind({.huge_pages = HugePages::kHugetlb, .shared = true}), MemoryKind::kHugetlbMemfd);
}

TEST(MemoryBacking, RefusesCombinationsThatCannotWork) {
  auto a = choose_memory_kind({.merge = true, .shared = true});
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message().find("KSM merges only private anonymous memory"), std::string::npos);
  auto b = choose_memory_kind({.huge_pages = HugePages::kHugetlb, .merge = true});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message().find("hugetlbfs"), std::string::npos);
}

TEST(MemoryBacking, DescribesOptionsAsTyped) {
  EXPECT_EQ(describe({}), "");
  EXPECT_EQ(describe({.huge_pages = HugePages::kTransparent, .lock = true}), "hugepages=thp,lock=on");
  EXPECT_EQ(describe({.huge_pages = HugePages::kHugetlb, .prealloc = true, .shared = true}),
            "hugepages=on,prealloc=on,shared=on");
}

TEST(MemoryBacking, MappedRestoreKeepsOnlyMerge) {
  EXPECT_FALSE(mapped_restore_conflict({}));
  EXPECT_FALSE(mapped_restore_conflict({.merge = true}));
  EXPECT_TRUE(mapped_restore_conflict({.huge_pages = HugePages::kHugetlb}));
  EXPECT_TRUE(mapped_restore_conflict({.huge_pages = HugePages::kTransparent}));
  EXPECT_TRUE(mapped_restore_conflict({.lock = true}));
  EXPECT_TRUE(mapped_restore_conflict({.prealloc = true}));
  EXPECT_TRUE(mapped_restore_conflict({.shared = true}));
}

TEST(MemoryBacking, WarnsWhereTheHostStopsAnOption) {
  HostMemorySettings host{.thp_enabled = "madvise", .thp_shmem_enabled = "never", .ksm_run = 1};
  const MemoryBackingOptions thp{.huge_pages = HugePages::kTransparent};
  EXPECT_TRUE(host_setting_warnings(thp, MemoryKind::kPrivateAnonymous, host).empty());
  // THP on shared memory needs shmem huge pages.
  auto shared = host_setting_warnings(thp, MemoryKind::kSharedMemfd, host);
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_NE(shared[0].find("shmem_enabled is 'never'"), std::string::npos) << shared[0];
  host.thp_shmem_enabled = "advise";
  EXPECT_TRUE(host_setting_warnings(thp, MemoryKind::kSharedMemfd, host).empty());
  host.thp_enabled = "never";
  auto off = host_setting_warnings(thp, MemoryKind::kPrivateAnonymous, host);
  ASSERT_EQ(off.size(), 1u);
  EXPECT_NE(off[0].find("enabled is 'never'"), std::string::npos) << off[0];
  // Without THP asked for, THP settings say nothing.
  EXPECT_TRUE(host_setting_warnings({}, MemoryKind::kPrivateAnonymous, host).empty());

  host.ksm_run = 0;
  auto ksm = host_setting_warnings({.merge = true}, MemoryKind::kPrivateAnonymous, host);
  ASSERT_EQ(ksm.size(), 1u);
  EXPECT_NE(ksm[0].find("/sys/kernel/mm/ksm/run is 0"), std::string::npos) << ksm[0];
}

TEST(MemoryBacking, ReadsTheHostsSettings) {
  const HostMemorySettings host = HostMemorySettings::read();
  // Every Linux this runs on has THP and reports one bracketed choice.
  EXPECT_TRUE(host.thp_enabled == "always" || host.thp_enabled == "madvise" || host.thp_enabled == "never")
      << host.thp_enabled;
}

// --- what the kernel shows for each option ------------------------------------

// Pages of [p, p + length) resident in host memory.
uint64_t resident_pages(const uint8_t* p, uint64_t length) {
  std::vector<unsigned char> vec(length / 4096);
  EXPECT_EQ(::mincore(const_cast<uint8_t*>(p), length, vec.data()), 0);
  uint64_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

// The /proc/self/smaps block of the mapping holding `p`.
std::string smaps_of(const void* p) {
  std::ifstream in("/proc/self/smaps");
  std::string line, block;
  bool inside = false;
  const auto at = reinterpret_cast<uintptr_t>(p);
  while (std::getline(in, line)) {
    unsigned long long lo, hi;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      if (inside) break;
      inside = at >= lo && at < hi;
    }
    if (inside) block += line + "\n";
  }
  return block;
}

uint64_t status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  return 0;
}

TEST(MemoryBackingKernel, PrivateAnonymousDiscardDropsResidentPages) {
  auto m = GuestMemory::create({{GuestAddress(0), 4 * kMiB}});
  ASSERT_TRUE(m.ok()) << m.error().message();
  ASSERT_TRUE(m->fill(GuestAddress(0), 0x5a, 4 * kMiB).ok());
  uint8_t* host = m->regions()[0].host;
  ASSERT_EQ(resident_pages(host, 4 * kMiB), 1024u);
  ASSERT_TRUE(m->discard(GuestAddress(kMiB), 2 * kMiB).ok());
  EXPECT_EQ(resident_pages(host, 4 * kMiB), 512u);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(kMiB)), 0u);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(kMiB - 1)), 0x5a);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(3 * kMiB)), 0x5a);
}

TEST(MemoryBackingKernel, PreallocPopulatesEveryPage) {
  auto lazy = GuestMemory::create({{GuestAddress(0), 8 * kMiB}});
  ASSERT_TRUE(lazy.ok());
  EXPECT_EQ(resident_pages(lazy->regions()[0].host, 8 * kMiB), 0u);
  auto m = GuestMemory::create({{GuestAddress(0), 8 * kMiB}}, {.prealloc = true});
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(resident_pages(m->regions()[0].host, 8 * kMiB), 2048u);
  auto shared = GuestMemory::create({{GuestAddress(0), 8 * kMiB}}, {.prealloc = true, .shared = true});
  ASSERT_TRUE(shared.ok()) << shared.error().message();
  EXPECT_EQ(resident_pages(shared->regions()[0].host, 8 * kMiB), 2048u);
}

TEST(MemoryBackingKernel, ThpMarksAnAlignedMappingHugePageEligible) {
  auto m = GuestMemory::create({{GuestAddress(0), 8 * kMiB}}, {.huge_pages = HugePages::kTransparent});
  ASSERT_TRUE(m.ok()) << m.error().message();
  const uint8_t* host = m->regions()[0].host;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(host) % kHugetlbPageSize, 0u);
  const std::string smaps = smaps_of(host);
  EXPECT_NE(smaps.find(" hg"), std::string::npos) << smaps;  // VmFlags: MADV_HUGEPAGE
  if (HostMemorySettings::read().thp_enabled != "never")
    EXPECT_NE(smaps.find("THPeligible:"), std::string::npos) << smaps;
  const size_t eligible = smaps.find("THPeligible:");
  if (eligible != std::string::npos && HostMemorySettings::read().thp_enabled != "never")
    EXPECT_EQ(std::stoi(smaps.substr(eligible + 12)), 1) << smaps;
}

TEST(MemoryBackingKernel, MergeMarksTheMappingMergeable) {
  auto m = GuestMemory::create({{GuestAddress(0), 4 * kMiB}}, {.merge = true});
  ASSERT_TRUE(m.ok()) << m.error().message();
  const std::string smaps = smaps_of(m->regions()[0].host);
  EXPECT_NE(smaps.find(" mg"), std::string::npos) << smaps;  // VmFlags: MADV_MERGEABLE
  auto plain = GuestMemory::create({{GuestAddress(0), 4 * kMiB}});
  EXPECT_EQ(smaps_of(plain->regions()[0].host).find(" mg"), std::string::npos);
}

TEST(MemoryBackingKernel, LockPinsRamAndDiscardKeepsItLocked) {
  const uint64_t before = status_kib("VmLck");
  auto m = GuestMemory::create({{GuestAddress(0), 4 * kMiB}}, {.lock = true});
  if (!m.ok()) GTEST_SKIP() << "cannot lock 4 MiB here: " << m.error().message();
  uint8_t* host = m->regions()[0].host;
  EXPECT_EQ(status_kib("VmLck") - before, 4096u);
  EXPECT_EQ(resident_pages(host, 4 * kMiB), 1024u);
  ASSERT_TRUE(m->write_obj<uint32_t>(GuestAddress(0x3000), 9).ok());
  ASSERT_TRUE(m->discard(GuestAddress(0), kMiB).ok()) << "discard of locked RAM";
  EXPECT_EQ(resident_pages(host, 4 * kMiB), 768u);
  EXPECT_EQ(*m->read_obj<uint32_t>(GuestAddress(0x3000)), 0u);
  EXPECT_NE(smaps_of(host).find(" lo"), std::string::npos);  // still VM_LOCKED
}

TEST(MemoryBackingKernel, LockNamesTheRlimitWhenItIsTooLow) {
  // In a child without CAP_IPC_LOCK (root has it) and a 64 KiB limit.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0) ::_exit(10);
    data[0].effective &= ~(1u << CAP_IPC_LOCK);
    if (::syscall(SYS_capset, &header, data) != 0) ::_exit(11);
    rlimit limit{64 << 10, 64 << 10};
    if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) ::_exit(12);
    auto m = GuestMemory::create({{GuestAddress(0), 4 * kMiB}}, {.lock = true});
    if (m.ok()) ::_exit(13);
    const std::string& message = m.error().message();
    std::fprintf(stderr, "%s\n", message.c_str());
    ::_exit(message.find("RLIMIT_MEMLOCK is 64 KiB, below the 4 MiB") != std::string::npos &&
                    message.find("lock=on") == 0 && message.find('\n') == std::string::npos
                ? 0
                : 14);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(MemoryBackingKernel, HugetlbNeedsAPoolAndDiscardsWholeHugePages) {
  testing::HugetlbPool pool(4);  // 8 MiB, given back afterwards
  if (!pool.ok()) GTEST_SKIP() << "cannot grow the huge page pool here: " << pool.why();
  const uint64_t free_before = *HostMemorySettings::read().hugetlb_free;

  // Too big for the pool: refused at start, with the pool's figures.
  auto big = GuestMemory::create({{GuestAddress(0), (free_before + 1) * kHugetlbPageSize}},
                                 {.huge_pages = HugePages::kHugetlb});
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message().find("nr_hugepages"), std::string::npos) << big.error().message();

  auto odd = GuestMemory::create({{GuestAddress(0), 3 * kMiB}}, {.huge_pages = HugePages::kHugetlb});
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.error().message().find("2 MiB"), std::string::npos) << odd.error().message();

  auto m = GuestMemory::create({{GuestAddress(0), 4 * kMiB}}, {.huge_pages = HugePages::kHugetlb, .prealloc = true});
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->kind(), MemoryKind::kHugetlbMemfd);
  EXPECT_EQ(m->discard_granularity(), kHugetlbPageSize);
  EXPECT_EQ(*HostMemorySettings::read().hugetlb_free, free_before - 2);
  ASSERT_TRUE(m->fill(GuestAddress(0), 0x33, 4 * kMiB).ok());
  EXPECT_FALSE(m->discard(GuestAddress(0), 4096).ok());  // a huge page is the unit
  ASSERT_TRUE(m->discard(GuestAddress(2 * kMiB), 2 * kMiB).ok());
  EXPECT_EQ(*HostMemorySettings::read().hugetlb_free, free_before - 1);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(2 * kMiB)), 0u);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0)), 0x33);
}

}  // namespace
}  // namespace hostvisor
