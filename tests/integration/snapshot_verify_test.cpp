// A snapshot's memory file checked end to end: the vmgenid test kernel is
// snapshotted (Ctrl-A S) on the software CPU, then `hostvisor snapshot
// verify` finds it whole; one flipped byte of guest RAM in the memory file
// is named by its chunk by `verify`, and refuses `run --restore --verify`
// and a copy restore before the guest runs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "base/fd.h"
#include "guest_cases.h"
#include "tests/integration/child_process.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kTimeout{60};

TEST(SnapshotVerify, AFlippedByteOfGuestRamIsNamedByItsChunkAndRefusesAVerifiedOrCopiedRestore) {
  ScratchDir scratch{"snapshot-verify-test"};
  ASSERT_FALSE(scratch.path.empty());
  const fs::path snapshot = scratch.path / "snap";
  {
    GuestConsole console;
    ASSERT_TRUE(
        console.start({HOSTVISOR_PATH, "run", "--kernel", std::string(HV_GUESTS_DIR) + "/vmgenid.elf64", "--memory",
                       "64M", "--accel", "emu", "--debug-exit", "--snapshot-dir", snapshot.string()}))
        << console.failure();
    ASSERT_TRUE(console.wait_for_text("vmgenid ready", kTimeout)) << console.failure();
    ASSERT_TRUE(console.send_keys("\x01S")) << console.failure();
    ASSERT_TRUE(console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*; quitting\])"), kTimeout))
        << console.failure() << "\nstderr:\n"
        << console.err();
    EXPECT_EQ(console.wait_exit(kTimeout).value_or(-1), 0) << console.err();
  }
  const std::vector<std::string> verify = {HOSTVISOR_PATH, "snapshot", "verify", snapshot.string()};
  ChildResult whole = run_child(verify, kTimeout);
  EXPECT_EQ(whole.exit_status, 0) << whole.describe() << "\n" << whole.err;
  EXPECT_NE(whole.out.find("whole (header, "), std::string::npos) << whole.out;
  EXPECT_NE(whole.out.find(" 32 memory chunks of 2 MiB"), std::string::npos) << whole.out;

  // One byte of the kernel's data (the first data extent: guest RAM the
  // kernel was loaded into).
  const fs::path memory = snapshot / "memory";
  fs::permissions(memory, fs::perms::owner_write, fs::perm_options::add);
  UniqueFd fd(::open(memory.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  const off_t data = ::lseek(fd.get(), 0, SEEK_DATA);
  ASSERT_GE(data, 0);
  const off_t at = data + 100;
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd.get(), &byte, 1, at), 1);
  byte ^= 0x01;
  ASSERT_EQ(::pwrite(fd.get(), &byte, 1, at), 1);
  const std::string chunk = "the memory file's chunk " + std::to_string(at / (2 << 20)) + " (";

  ChildResult damaged = run_child(verify, kTimeout);
  EXPECT_EQ(damaged.exit_status, 1) << damaged.describe();
  EXPECT_NE(damaged.err.find(chunk), std::string::npos) << damaged.err;
  EXPECT_NE(damaged.err.find("does not match its checksum"), std::string::npos) << damaged.err;

  for (const std::vector<std::string>& how :
       {std::vector<std::string>{"--verify"}, std::vector<std::string>{"--restore-mode", "copy"}}) {
    std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--restore", snapshot.string(), "--headless"};
    argv.insert(argv.end(), how.begin(), how.end());
    ChildResult restored = run_child(argv, std::chrono::seconds(30));
    EXPECT_FALSE(restored.timed_out) << how[0] << ": the damaged snapshot was restored and ran";
    EXPECT_NE(restored.exit_status, 0) << how[0] << ": " << restored.describe();
    EXPECT_NE(restored.err.find(chunk), std::string::npos) << how[0] << ": " << restored.err;
  }
}

}  // namespace
}  // namespace hostvisor::testing
