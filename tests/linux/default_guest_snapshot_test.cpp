// The ctest fixture of the guest tests that start from the shared snapshot
// of the default guest (default_guest_snapshot.h): makes it, booting the
// guest, unless one made from this very hostvisor binary and default guest
// is there already, and checks what that boot printed. Registered with
// FIXTURES_SETUP, so ctest runs it first whenever a test that needs the
// snapshot is selected.
#include "tests/linux/default_guest_snapshot.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

namespace hostvisor::testing {
namespace {

TEST(LinuxGuestSnapshotFixture, BootsTheDefaultGuestToAnOnlineShellAndSnapshotsIt) {
  // HOSTVISOR_TEST_FRESH_SNAPSHOT=1: boot anew even if a usable one is there.
  const char* fresh = std::getenv("HOSTVISOR_TEST_FRESH_SNAPSHOT");
  bool made = false;
  DefaultGuestSnapshot snapshot(&made, fresh && std::string(fresh) == "1");
  ASSERT_TRUE(snapshot.ok()) << snapshot.error();
  std::printf("%s the shared snapshot %s\n", made ? "made" : "reused", snapshot.dir().c_str());
  // The banner of the boot that made it: the init script counted one CPU.
  std::smatch banner;
  const std::string boot = snapshot.boot_output();
  ASSERT_TRUE(std::regex_search(
      boot, banner, std::regex(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)")))
      << "no banner in the boot that made the snapshot:\n"
      << boot;
  EXPECT_EQ(banner[2].str(), "1") << "the init script counted a different number of CPUs";
}

}  // namespace
}  // namespace hostvisor::testing
