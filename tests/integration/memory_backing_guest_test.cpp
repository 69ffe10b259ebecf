// --memory's backing options seen where the host kernel shows them, with a
// running VM on the software CPU: the memtouch test kernel writes all of its
// RAM above 16 MiB and idles, and the test reads the hostvisor process's
// /proc files and the host's huge page pool and KSM counters.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "memory/memory_backing.h"
#include "memory/testing/hugetlb_pool.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

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

// The host address of the guest RAM mapping in `smaps` (its first line).
uint64_t mapping_start(const std::string& smaps) { return std::strtoull(smaps.c_str(), nullptr, 16); }

// What memtouch left at guest-physical `gpa` (in its touched range), read
// from the VM's own RAM mapping through /proc/PID/mem.
bool page_holds_memtouch_pattern(pid_t pid, uint64_t gpa) {
  const std::string smaps = ram_smaps(pid);
  if (smaps.empty()) return false;
  uint64_t words[2] = {};
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool read_ok = ::pread(fd, words, sizeof words, static_cast<off_t>(mapping_start(smaps) + gpa)) ==
                       static_cast<ssize_t>(sizeof words);
  ::close(fd);
  return read_ok && words[0] == gpa && words[1] == 0x6d656d746f756368ull;
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
    EXPECT_NE(read_file("/proc/" + std::to_string(vm.pid()) + "/maps").find("/memfd:hostvisor-ram"), std::string::npos);
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

// Runs memtouch with `memory`, snapshots it from the console (Ctrl-A S), and
// restores it with `restore_args`; `restored` is the running restore.
void snapshot_and_restore(const std::string& memory, const std::string& dir, GuestConsole& restored,
                          const std::vector<std::string>& restore_args = {}) {
  {
    GuestConsole vm;
    ASSERT_TRUE(vm.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--kernel", memtouch_kernel(), "--memory", memory,
                          "--snapshot-dir", dir}))
        << vm.failure();
    ASSERT_TRUE(vm.wait_for_text("memtouch: touched", kTouchTimeout)) << vm.failure() << vm.err();
    ASSERT_TRUE(page_holds_memtouch_pattern(vm.pid(), 40ull << 20));
    ASSERT_TRUE(vm.send_keys("\x01S")) << vm.failure();
    ASSERT_TRUE(vm.wait_for_text("snapshot written", seconds(60))) << vm.failure() << vm.err();
    const auto status = vm.wait_exit(seconds(60));
    ASSERT_TRUE(status && *status == 0) << vm.failure() << vm.err();
  }
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--restore", dir};
  argv.insert(argv.end(), restore_args.begin(), restore_args.end());
  ASSERT_TRUE(restored.start(argv)) << restored.failure();
  // The restore line comes once RAM is back; the guest idles on.
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (restored.err().find("hostvisor: restored") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    restored.read_for(std::chrono::milliseconds(100));
  ASSERT_NE(restored.err().find("hostvisor: restored"), std::string::npos) << restored.err();
}

TEST(MemoryBackingGuest, HugePagesSnapshotRestoresByCopyingIntoHugePages) {
  HugetlbPool pool(kRamMiB / 2 + 4);
  if (!pool.ok()) GTEST_SKIP() << "cannot grow the host's huge page pool: " << pool.why();
  ScratchDir dir{"memory-test"};
  GuestConsole restored;
  snapshot_and_restore(std::to_string(kRamMiB) + "M,hugepages=on", (dir.path / "snap").string(), restored);
  // --restore-mode map (the default) cannot give huge pages: it copies, and says so.
  EXPECT_NE(restored.err().find("hugepages=on needs RAM from the huge page pool, so guest RAM is copied"),
            std::string::npos)
      << restored.err();
  EXPECT_NE(restored.err().find("(copy)"), std::string::npos) << restored.err();
  EXPECT_NE(read_file("/proc/" + std::to_string(restored.pid()) + "/maps").find("/memfd:hostvisor-ram"),
            std::string::npos);
  EXPECT_TRUE(page_holds_memtouch_pattern(restored.pid(), 40ull << 20));
  EXPECT_TRUE(page_holds_memtouch_pattern(restored.pid(), (kRamMiB - 1) << 20));
}

TEST(MemoryBackingGuest, MergeSnapshotRestoresMappedAndMergeable) {
  ScratchDir dir{"memory-test"};
  GuestConsole restored;
  snapshot_and_restore(std::to_string(kRamMiB) + "M,merge=on", (dir.path / "snap").string(), restored);
  EXPECT_NE(restored.err().find("(map)"), std::string::npos) << restored.err();
  const std::string smaps = ram_smaps(restored.pid());
  EXPECT_NE(smaps.find(" mg"), std::string::npos) << smaps;  // VmFlags: MADV_MERGEABLE
  EXPECT_TRUE(page_holds_memtouch_pattern(restored.pid(), 40ull << 20));
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
  // The host-wide counter holds at least these two VMs' merges. Not
  // "before + want": another test's VM may end meanwhile and take its own
  // merges out of the counter.
  EXPECT_GE(KsmSettings::counter("pages_sharing"), want);
}

}  // namespace
}  // namespace hostvisor::testing
