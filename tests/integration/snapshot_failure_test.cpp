// A save that fails leaves the running VM as it was: a test kernel with a
// raw disk is snapshotted (Ctrl-A s) while the disk's overlay cannot be
// created (its temporary name is taken by a directory). The save must fail
// with a message, publish nothing, leave no temporary directory, and leave
// the live disk writable and unswitched (same file, same mode) with the
// previous snapshot of that name untouched; the guest runs on, and once the
// obstacle is gone a save works.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "guest_cases.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kTimeout{60};

struct FileId {
  ino_t inode = 0;
  mode_t mode = 0;
  bool operator==(const FileId&) const = default;
};

FileId file_id(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return {st.st_ino, static_cast<mode_t>(st.st_mode & 07777)};
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

int temp_dirs(const fs::path& parent) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(parent))
    if (entry.path().filename().string().rfind(".snap.tmp-", 0) == 0) ++n;
  return n;
}

// The kernel still answers: its vCPU runs and its console works.
void expect_guest_running(GuestConsole& console) {
  ASSERT_TRUE(console.send_keys("?")) << console.failure();
  EXPECT_TRUE(console.wait_for_regex(std::regex("vmgenid query: [0-9a-f]{32}"), kTimeout)) << console.failure();
}

void save_fails(GuestConsole& console) {
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  auto line = console.wait_for_regex(std::regex(R"(\[hostvisor: (snapshot [^\]]*)\])"), kTimeout);
  ASSERT_TRUE(line) << console.failure() << "\nstderr:\n" << console.err();
  EXPECT_NE((*line)[1].str().find("snapshot failed: "), std::string::npos) << (*line)[1].str();
  EXPECT_NE((*line)[1].str().find(".new-overlay"), std::string::npos) << "the message should name the overlay";
}

TEST(SnapshotSaveFailure, LeavesTheRunningVmOnItsWritableDiskAndThePreviousSnapshotInPlace) {
  ScratchDir scratch{"save-failure-test"};
  ASSERT_FALSE(scratch.path.empty());
  const fs::path disk = scratch.path / "disk.raw", snapshot = scratch.path / "snap";
  const fs::path obstacle = scratch.path / "disk.raw.new-overlay";
  {
    std::ofstream out(disk, std::ios::binary);
    out << "raw disk contents";
  }
  fs::resize_file(disk, 1 << 20);
  ::chmod(disk.c_str(), 0640);
  fs::create_directory(obstacle);
  std::ofstream(obstacle / "keep") << "not hostvisor's";

  GuestConsole console;
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--kernel", std::string(HV_GUESTS_DIR) + "/vmgenid.elf64",
                             "--memory", "64M", "--accel", "emu", "--debug-exit", "--disk",
                             disk.string() + ",format=raw", "--snapshot-dir", snapshot.string()}))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("vmgenid ready", kTimeout)) << console.failure() << console.err();

  // No snapshot yet: the failed save publishes none.
  const FileId raw = file_id(disk);
  save_fails(console);
  if (HasFatalFailure()) return;
  EXPECT_FALSE(fs::exists(snapshot));
  EXPECT_EQ(temp_dirs(scratch.path), 0);
  EXPECT_EQ(file_id(disk), raw) << "the live disk was switched or made read-only";
  EXPECT_EQ(raw.mode, 0640u);
  EXPECT_EQ(read_all(disk).substr(0, 17), "raw disk contents");
  EXPECT_TRUE(fs::exists(obstacle / "keep"));
  ASSERT_NO_FATAL_FAILURE(expect_guest_running(console));

  // Without the obstacle the save works: the disk is frozen into the
  // snapshot and the VM goes on in a qcow2 overlay under the disk's name.
  fs::remove_all(obstacle);
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*\])"), kTimeout))
      << console.failure() << "\nstderr:\n"
      << console.err();
  const std::string header = read_all(snapshot / "header");
  EXPECT_FALSE(header.empty());
  const FileId overlay = file_id(disk);
  EXPECT_NE(overlay.inode, raw.inode);
  EXPECT_EQ(read_all(disk).substr(0, 4), "QFI\xfb");

  // A second failed save keeps that snapshot, and the VM on that overlay.
  fs::create_directory(obstacle);
  std::ofstream(obstacle / "keep") << "not hostvisor's";
  save_fails(console);
  if (HasFatalFailure()) return;
  EXPECT_EQ(read_all(snapshot / "header"), header);
  EXPECT_EQ(temp_dirs(scratch.path), 0);
  EXPECT_EQ(file_id(disk), overlay);
  EXPECT_EQ(overlay.mode & 0200, 0200u) << "the overlay must stay writable";
  ASSERT_NO_FATAL_FAILURE(expect_guest_running(console));

  ASSERT_TRUE(console.send_keys("q")) << console.failure();
  const auto status = console.wait_exit(kTimeout);
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, kStatusPass) << console.err();
}

}  // namespace
}  // namespace hostvisor::testing
