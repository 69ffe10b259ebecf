// Boots the fw_cfg test kernel (tests/guests/scenarios/fw_cfg.c) on both
// backends: it reads the CPU count, RAM size and e820 map through fw_cfg's
// port and DMA interfaces and compares them with the configuration this
// test passes on the command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "child_process.h"
#include "guest_cases.h"
#include "kvm_skip.h"

namespace hostvisor::testing {
namespace {

constexpr auto kTimeout = std::chrono::seconds(60);

ChildResult boot_fw_cfg_kernel(const std::string& accel, unsigned cpus, unsigned ram_mib, const std::string& append,
                               const std::vector<std::string>& extra = {}) {
  const std::string kernel = std::string(HV_GUESTS_DIR) + "/fw_cfg.pvh";
  EXPECT_TRUE(std::filesystem::exists(kernel)) << kernel << " was not built (target hv_guest_kernels)";
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run",
                                   "--kernel",     kernel,
                                   "--memory",     std::to_string(ram_mib) + "M",
                                   "--cpus",       std::to_string(cpus),
                                   "--accel",      accel,
                                   "--debug-exit", "--no-reboot",
                                   "--append",     append};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_child(argv, kTimeout);
}

std::string expected_config(unsigned cpus, unsigned ram_mib) {
  return "fwcfg.cpus=" + std::to_string(cpus) + " fwcfg.ram_mib=" + std::to_string(ram_mib);
}

// hostvisor's etc/e820 is the map the boot protocols hand a kernel.
std::string expected_hostvisor_config(unsigned cpus, unsigned ram_mib) {
  return expected_config(cpus, ram_mib) + " fwcfg.e820=boot";
}

class FwCfgGuestTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "kvm") HV_SKIP_WITHOUT_DEV_KVM("the fw_cfg test kernel on kvm");
  }
};

TEST_P(FwCfgGuestTest, ReadsTheConfigurationThroughPortAndDma) {
  // Two CPUs and an odd RAM size, so neither matches a default by chance.
  const ChildResult r =
      boot_fw_cfg_kernel(GetParam(), 2, 96, expected_hostvisor_config(2, 96) + " fwcfg.opt=from-the-host",
                         {"--fw-cfg", "name=opt/hostvisor/test,string=from-the-host"});
  const std::string log = transcript("fw_cfg.pvh on " + GetParam(), r);
  ASSERT_FALSE(r.timed_out) << log;
  EXPECT_EQ(r.exit_status, kStatusPass) << log;
  EXPECT_NE(r.out.find("PASS fw_cfg\n"), std::string::npos) << log;
  EXPECT_NE(r.out.find("fw_cfg: 2 CPUs (max 2), RAM 96 MiB"), std::string::npos) << log;
  EXPECT_NE(r.out.find("fw_cfg: opt/hostvisor/test holds the text the host gave"), std::string::npos) << log;
  EXPECT_NE(r.out.find("smbios: 2 processors, 96 MiB mapped"), std::string::npos) << log;
}

// A user file the guest must see, and must not see changed: told to expect
// other text, the kernel fails.
TEST(FwCfgGuestRejectsTest, AnotherUserFileTextFails) {
  const ChildResult r = boot_fw_cfg_kernel("emu", 1, 64, expected_hostvisor_config(1, 64) + " fwcfg.opt=text-one",
                                           {"--fw-cfg", "name=opt/hostvisor/test,string=text-two"});
  const std::string log = transcript("fw_cfg.pvh told to expect other opt/ text", r);
  EXPECT_EQ(r.exit_status, kStatusFail) << log;
  EXPECT_NE(r.out.find("FAIL fw_cfg: opt/hostvisor/test holds \"text-two\""), std::string::npos) << log;
}

// Bad --fw-cfg options end hostvisor with a one-line error before anything runs.
TEST(FwCfgOptionTest, MissingHostFileIsAClearError) {
  const std::string kernel = std::string(HV_GUESTS_DIR) + "/fw_cfg.pvh";
  const ChildResult r = run_child({HOSTVISOR_PATH, "run", "--kernel", kernel, "--accel", "emu", "--no-reboot",
                                   "--fw-cfg", "name=opt/x,file=/nonexistent/hostvisor-fw-cfg"},
                                  kTimeout);
  const std::string log = transcript("--fw-cfg with a missing file", r);
  EXPECT_EQ(r.exit_status, 1) << log;
  EXPECT_NE(r.err.find("--fw-cfg opt/x"), std::string::npos) << log;
  EXPECT_NE(r.err.find("/nonexistent/hostvisor-fw-cfg"), std::string::npos) << log;
}

// QEMU as the oracle: the same kernel, with the same expectations and a
// user file through QEMU's own -fw_cfg, passes there too, so what the
// kernel checks is fw_cfg as QEMU defines it, not hostvisor's reading of it.
TEST(FwCfgQemuOracleTest, KernelPassesUnderQemu) {
  constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";  // scripts/setup-host.sh installs it
  ASSERT_EQ(access(kQemu, X_OK), 0) << kQemu << " is missing: run scripts/setup-host.sh (package qemu-system-x86)";
  const std::string kernel = std::string(HV_GUESTS_DIR) + "/fw_cfg.pvh";
  const ChildResult r = run_child({kQemu,        "-accel",
                                   "tcg",        "-nographic",
                                   "-no-reboot", "-nodefaults",
                                   "-smp",       "2,sockets=2",
                                   "-m",         "96",
                                   "-net",       "none",
                                   "-device",    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                                   "-serial",    "stdio",
                                   "-monitor",   "none",
                                   "-display",   "none",
                                   "-kernel",    kernel,
                                   "-append",    expected_config(2, 96) + " fwcfg.opt=from-qemu",
                                   "-fw_cfg",    "name=opt/hostvisor/test,string=from-qemu"},
                                  kTimeout);
  const std::string log = transcript("QEMU booting fw_cfg.pvh", r);
  ASSERT_FALSE(r.timed_out) << log;
  EXPECT_EQ(r.exit_status, kStatusPass) << log;
  EXPECT_NE(r.out.find("PASS fw_cfg\n"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Accelerators, FwCfgGuestTest, ::testing::Values("kvm", "emu"));

// The kernel's comparison must be able to fail: told to expect a CPU count
// the machine does not have, it reports FAIL.
TEST(FwCfgGuestRejectsTest, AnotherCpuCountFails) {
  const ChildResult r = boot_fw_cfg_kernel("emu", 1, 64, expected_hostvisor_config(3, 64));
  const std::string log = transcript("fw_cfg.pvh told to expect 3 CPUs", r);
  EXPECT_EQ(r.exit_status, kStatusFail) << log;
  EXPECT_NE(r.out.find("FAIL fw_cfg: fw_cfg says 1 CPUs, the machine has 3"), std::string::npos) << log;
}

}  // namespace
}  // namespace hostvisor::testing
