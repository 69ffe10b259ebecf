// --memory's backing options seen where the host kernel shows them, with a
// running VM on the software CPU: the memtouch test kernel writes all of its
// RAM above 16 MiB and idles, and the test reads the hostvisor process's
// /proc files and the host's huge page pool and KSM counters.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "memory/memory_backing.h"
#include "memory/testing/hugetlb_pool.h"
#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

using std::chrono::seconds;

constexpr seconds kTouchTimeout{120};
// An odd size, so the RAM mapping is easy to tell from the process's others.
constexpr uint64_t kRamMiB = 72;
constexpr uint64_t kTouchedMiB = kRamMiB - 16;  // memtouch writes from 16 MiB up

std::string memtouch_kernel() { return std::string(HV_GUESTS_DIR) + "/memtouch.pvh"; }

// Boots memtouch with `memory` and waits until it has written its RAM.
void start_memtouch(GuestConsole& vm, const std::string& memory) {
  ASSERT_TRUE(vm.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--kernel", memtouch_kernel(), "--memory", memory}))
      << vm.failure();
  ASSERT_TRUE(vm.wait_for_text("memtouch: touched " + std::to_string(kTouchedMiB) + " MiB", kTouchTimeout))
      << vm.failure() << "\nstderr:\n"
      << vm.err();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A "Name:   123 kB" field of a /proc file's text, in KiB.
std::optional<uint64_t> field_kib(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + ":");
  if (at == std::string::npos && text.rfind(name + ":", 0) != 0) return std::nullopt;
  const size_t value = (at == std::string::npos ? 0 : at + 1) + name.size() + 1;
  return std::strtoull(text.c_str() + value, nullptr, 10);
}

// The smaps block of the process's guest RAM mapping (the one of kRamMiB).
std::string ram_smaps(pid_t pid) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/smaps"));
  std::string line, block, found;
  auto close_block = [&] {
    if (field_kib(block, "Size") == kRamMiB * 1024) found = block;
    block.clear();
  };
  while (std::getline(in, line)) {
    unsigned long long lo, hi;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) close_block();
    block += line + "\n";
  }
  close_block();
  return found;
}

uint64_t hugetlb_free() { return HostMemorySettings::read().hugetlb_free.value_or(0); }

TEST(MemoryBackingGuest, ThpGivesHugePagesAndLockPinsRam) {
  GuestConsole vm;
  start_memtouch(vm, std::to_string(kRamMiB) + "M,hugepages=thp,lock=on");
  const std::string smaps = ram_smaps(vm.pid());
  ASSERT_FALSE(smaps.empty()) << "no " << kRamMiB << " MiB mapping in hostvisor's smaps";
  // Huge pages need free 2 MiB blocks on the host; most of the RAM gets them.
  if (HostMemorySettings::read().thp_enabled != "never")
    EXPECT_GE(field_kib(smaps, "AnonHugePages").value_or(0), kTouchedMiB / 2 * 1024) << smaps;
  const std::string status = read_file("/proc/" + std::to_string(vm.pid()) + "/status");
  EXPECT_GE(field_kib(status, "VmLck").value_or(0), kRamMiB * 1024) << status;
  EXPECT_EQ(field_kib(smaps, "Locked").value_or(0), kRamMiB * 1024) << smaps;
}

TEST(MemoryBackingGuest, SharedPreallocIsAPopulatedMemfdAndSaysWhatTheHostStops) {
  GuestConsole vm;
  start_memtouch(vm, std::to_string(kRamMiB) + "M,shared=on,prealloc=on,hugepages=thp");
  const std::string status = read_file("/proc/" + std::to_string(vm.pid()) + "/status");
  // All of RAM is in the process's shared memory, not just what the guest wrote.
  EXPECT_GE(field_kib(status, "RssShmem").value_or(0), kRamMiB * 1024) << status;
  EXPECT_NE(read_file("/proc/" + std::to_string(vm.pid()) + "/maps").find("/memfd:hostvisor-ram"), std::string::npos);
  const std::string shmem = HostMemorySettings::read().thp_shmem_enabled;
  if (shmem == "never" || shmem == "deny")
    EXPECT_NE(vm.err().find("shmem_enabled is '" + shmem + "'"), std::string::npos) << vm.err();
}

TEST(MemoryBackingGuest, HugetlbComesFromThePoolAndATooSmallPoolIsAnErrorAtStart) {
  HugetlbPool pool(kRamMiB / 2 + 4);
  if (!pool.ok()) GTEST_SKIP() << "cannot grow the host's huge page pool: " << pool.why();
  const uint64_t free_before = hugetlb_free();
  {
    GuestConsole vm;
    start_memtouch(vm, std::to_string(kRamMiB) + "M,hugepages=on");
    EXPECT_GE(free_before - hugetlb_free(), kTouchedMiB / 2) << "HugePages_Free did not drop";
    EXPECT_NE(read_file("/proc/" + std::to_string(vm.pid()) + "/maps").find("/memfd:hostvisor-ram"),
              std::string::npos);
  }
  // Twice the pool: refused before the guest runs, not a SIGBUS later.
  GuestConsole big;
  ASSERT_TRUE(big.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--kernel", memtouch_kernel(), "--memory",
                         std::to_string(free_before * 4) + "M,hugepages=on"}))
      << big.failure();
  const auto status = big.wait_exit(seconds(60));
  ASSERT_TRUE(status) << big.failure();
  EXPECT_EQ(*status, 1);
  EXPECT_NE(big.err().find("raise /proc/sys/vm/nr_hugepages"), std::string::npos) << big.err();
  EXPECT_EQ(big.out().find("memtouch"), std::string::npos);
}

// KSM's knobs, set for the test and put back afterwards.
class KsmSettings {
 public:
  KsmSettings() {
    lock_ = ::open("/tmp/hostvisor-ksm.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_ >= 0) ::flock(lock_, LOCK_EX);
    for (const char* knob : {"run", "pages_to_scan", "sleep_millisecs"}) saved_.emplace_back(knob, read(knob));
    // Scan fast: the default 100 pages every 20 ms would take minutes.
    ok_ = write("pages_to_scan", "20000") && write("sleep_millisecs", "10") && write("run", "1");
  }
  ~KsmSettings() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it)
      if (!it->second.empty()) write(it->first, it->second);
    if (lock_ >= 0) ::close(lock_);
  }
  bool ok() const { return ok_; }
  static uint64_t counter(const std::string& name) { return std::strtoull(read(name).c_str(), nullptr, 10); }

 private:
  static std::string read(const std::string& knob) {
    std::string text = read_file("/sys/kernel/mm/ksm/" + knob);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }
  static bool write(const std::string& knob, const std::string& value) {
    std::ofstream out("/sys/kernel/mm/ksm/" + knob);
    out << value;
    out.flush();
    return static_cast<bool>(out);
  }
  int lock_ = -1;
  bool ok_ = false;
  std::vector<std::pair<std::string, std::string>> saved_;
};

uint64_t ksm_merging_pages(pid_t pid) {
  return std::strtoull(read_file("/proc/" + std::to_string(pid) + "/ksm_merging_pages").c_str(), nullptr, 10);
}

TEST(MemoryBackingGuest, KsmMergesTwoVmsRunningTheSameKernel) {
  KsmSettings ksm;
  if (!ksm.ok()) GTEST_SKIP() << "cannot turn KSM on here (/sys/kernel/mm/ksm)";
  const uint64_t sharing_before = KsmSettings::counter("pages_sharing");
  GuestConsole a, b;
  start_memtouch(a, std::to_string(kRamMiB) + "M,merge=on");
  start_memtouch(b, std::to_string(kRamMiB) + "M,merge=on");
  // Each VM's touched pages match the other VM's: at least half of them
  // should be merged within the minute.
  const uint64_t want = kTouchedMiB * 256 / 2;
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         (ksm_merging_pages(a.pid()) < want || ksm_merging_pages(b.pid()) < want))
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_GE(ksm_merging_pages(a.pid()), want);
  EXPECT_GE(ksm_merging_pages(b.pid()), want);
  EXPECT_GE(KsmSettings::counter("pages_sharing"), sharing_before + want);
}

}  // namespace
}  // namespace hostvisor::testing
