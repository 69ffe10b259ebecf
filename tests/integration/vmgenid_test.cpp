// The VM generation ID end to end, on each backend: the vmgenid test kernel
// (tests/guests/scenarios/vmgenid.c) finds the ID through the ACPI tables
// as a guest does and prints it; it is snapshotted (Ctrl-A S), and then
//   - a plain restore (map, and copy) sees the same ID and no notification,
//     and so does one on the other backend (kvm to emu, emu to kvm);
//   - two clones running at once each see a new ID of their own, announced
//     by the GPE the tables name (the kernel polls its status bit).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>
#include <string>

#include "guest_cases.h"
#include "hv/accel.h"
#include "kvm_skip.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kTimeout{60};

class VmGenerationIdTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "kvm") HV_SKIP_WITHOUT_DEV_KVM("the kvm VMGENID test");
    ASSERT_FALSE(scratch_.path.empty());
  }

  fs::path snapshot() const { return scratch_.path / "vmgenid"; }

  // Boots the kernel, reads the ID it found, snapshots it and quits.
  std::string boot_and_snapshot() {
    GuestConsole console;
    EXPECT_TRUE(
        console.start({HOSTVISOR_PATH, "run", "--kernel", std::string(HV_GUESTS_DIR) + "/vmgenid.elf64", "--memory",
                       "64M", "--accel", GetParam(), "--debug-exit", "--snapshot-dir", snapshot().string()}))
        << console.failure();
    auto id = console.wait_for_regex(std::regex("vmgenid id: ([0-9a-f]{32})"), kTimeout);
    if (!id) {
      ADD_FAILURE() << "no ID: " << console.failure() << "\nstderr:\n" << console.err();
      return {};
    }
    const std::string original = (*id)[1].str();
    EXPECT_TRUE(console.wait_for_text("vmgenid ready", kTimeout)) << console.failure();
    EXPECT_TRUE(console.send_keys("\x01S")) << console.failure();
    EXPECT_TRUE(console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*; quitting\])"), kTimeout))
        << console.failure() << "\nstderr:\n"
        << console.err();
    const auto status = console.wait_exit(kTimeout);
    EXPECT_TRUE(status) << console.failure();
    EXPECT_EQ(status.value_or(-1), 0) << console.err();
    return original;
  }

  void restore(GuestConsole& console, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--restore", snapshot().string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(console.start(argv)) << console.failure();
  }

  // Asks the running kernel for the ID it reads now and how many
  // notifications it has seen.
  std::pair<std::string, int> query(GuestConsole& console) {
    EXPECT_TRUE(console.send_keys("?")) << console.failure();
    auto answer = console.wait_for_regex(std::regex(R"(vmgenid query: ([0-9a-f]{32}) notifications (\d+))"), kTimeout);
    if (!answer) {
      ADD_FAILURE() << "no answer: " << console.failure() << "\nstderr:\n" << console.err();
      return {"", -1};
    }
    return {(*answer)[1].str(), std::stoi((*answer)[2].str())};
  }

  void quit(GuestConsole& console) {
    EXPECT_TRUE(console.send_keys("q")) << console.failure();
    const auto status = console.wait_exit(kTimeout);
    EXPECT_TRUE(status) << console.failure();
    EXPECT_EQ(status.value_or(-1), kStatusPass) << console.out() << "\nstderr:\n" << console.err();
  }

  ScratchDir scratch_{"vmgenid-test"};
};

TEST_P(VmGenerationIdTest, RestoresKeepTheIdAndEachCloneGetsANewOneWithANotification) {
  const std::string original = boot_and_snapshot();
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(original, std::string(32, '0')) << "the ID was never written";

  for (const char* mode : {"map", "copy"}) {
    GuestConsole restored;
    restore(restored, {"--restore-mode", mode});
    if (HasFatalFailure()) return;
    EXPECT_EQ(query(restored), std::make_pair(original, 0)) << "a plain restore (" << mode << ")";
    quit(restored);
  }

  // The whole machine on the other backend (`--restore --accel`): kvm to
  // emu in the kvm variant, emu to kvm in the emu one where /dev/kvm works.
  const std::string other = GetParam() == "kvm" ? "emu" : "kvm";
  if (other == "emu" || probe_host_virtualization().dev_kvm_usable) {
    GuestConsole moved;
    restore(moved, {"--accel", other});
    if (HasFatalFailure()) return;
    EXPECT_EQ(query(moved), std::make_pair(original, 0)) << "a restore on " << other;
    quit(moved);
    EXPECT_NE(moved.err().find("accel " + other + ":"), std::string::npos) << "not restored on " << other << ":\n"
                                                                           << moved.err();
  } else {
    std::printf("\n*** /dev/kvm is not usable: the emu-to-kvm restore did NOT run. ***\n");
  }

  // Two clones at once.
  GuestConsole first, second;
  restore(first, {"--clone"});
  restore(second, {"--clone"});
  if (HasFatalFailure()) return;
  std::set<std::string> ids = {original};
  for (GuestConsole* clone : {&first, &second}) {
    auto notified = clone->wait_for_regex(std::regex("vmgenid notified: ([0-9a-f]{32})"), kTimeout);
    ASSERT_TRUE(notified) << "a clone got no notification: " << clone->failure() << "\nstderr:\n" << clone->err();
    const std::string id = (*notified)[1].str();
    EXPECT_TRUE(ids.insert(id).second) << "a clone's ID " << id << " is not new";
    EXPECT_EQ(query(*clone), std::make_pair(id, 1));
  }
  quit(first);
  quit(second);
}

INSTANTIATE_TEST_SUITE_P(Backends, VmGenerationIdTest, ::testing::Values("emu", "kvm"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace hostvisor::testing
