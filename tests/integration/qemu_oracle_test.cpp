// Boots the test kernels in QEMU (TCG), an independent implementation of the
// same boot protocols and devices, so a failure in GuestBootTest can be told
// apart from a broken test kernel. QEMU refuses plain ELF64 kernels, so those
// cases are not run here. With -no-reboot QEMU ends with status 0 on a reset
// or a triple fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "child_process.h"
#include "guest_cases.h"
#include "guest_contract.h"

namespace hostvisor::testing {
namespace {

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";  // scripts/setup-host.sh installs it
constexpr auto kQemuTimeout = std::chrono::seconds(60);

std::vector<GuestCase> qemu_cases() {
  std::vector<GuestCase> cases;
  for (const GuestCase& c : kGuestCases) {
    // smc_smp patches code another CPU runs without the serializing
    // instruction the SDM asks of the CPU that runs it (on purpose: it
    // looks for a translation kept for good); QEMU's TCG keeps running the
    // old translation for seconds there, so it is no oracle for it.
    if (std::string(c.scenario) == "smc_smp") continue;
    // smc_smp_serialized does serialize as the SDM asks, and passes on KVM,
    // but QEMU 7.2's TCG fails it within the first rounds here: after the
    // signal and CPUID its CPU 0 still runs the old code. Not an oracle
    // for it either.
    if (std::string(c.scenario) == "smc_smp_serialized") continue;
    if (std::string(c.format) != "elf64") cases.push_back(c);
  }
  return cases;
}

class QemuOracleTest : public ::testing::TestWithParam<GuestCase> {};

TEST_P(QemuOracleTest, KernelBehavesUnderQemu) {
  const GuestCase& c = GetParam();
  ASSERT_EQ(access(kQemu, X_OK), 0) << kQemu << " is missing: run scripts/setup-host.sh (package qemu-system-x86)";
  const std::string kernel = guest_image(c);
  ASSERT_TRUE(std::filesystem::exists(kernel)) << kernel << " was not built (target hv_guest_kernels)";

  std::vector<std::string> argv = {kQemu,        "-accel",
                                   "tcg",        "-nographic",
                                   "-no-reboot", "-nodefaults",
                                   "-smp",       std::to_string(c.cpus),
                                   "-m",         "64",
                                   "-net",       "none",
                                   "-device",    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                                   "-serial",    "stdio",
                                   "-monitor",   "none",
                                   "-display",   "none",
                                   "-kernel",    kernel};
  std::optional<TestInitrd> initrd;
  if (needs_boot_payload(c)) {
    initrd.emplace();
    argv.insert(argv.end(), {"-initrd", initrd->path(), "-append", HVT_BOOTINFO_CMDLINE});
  }
  // The disks as modern-only virtio-pci functions, with the serials hostvisor
  // gives them.
  std::optional<TestDisks> disks;
  if (c.test_disks) {
    disks.emplace();
    argv.insert(argv.end(), {"-drive", "if=none,id=rw,format=raw,file=" + disks->writable_path(), "-device",
                             "virtio-blk-pci,drive=rw,disable-legacy=on,serial=" HVT_BLK_SERIAL_RW, "-drive",
                             "if=none,id=ro,format=raw,readonly=on,file=" + disks->read_only_path(), "-device",
                             "virtio-blk-pci,drive=ro,disable-legacy=on,serial=" HVT_BLK_SERIAL_RO});
  }
  // The virtio console's port 0 goes to a file, apart from the serial port,
  // so the oracle also proves the kernel sends its text through the device.
  // Three MSI-X vectors: configuration, receiveq0, transmitq0. With typed
  // input the virtio console takes QEMU's stdin and stdout instead (QEMU 7.2's
  // file chardev has no input), and the serial port goes to a file.
  const std::string scratch = std::filesystem::temp_directory_path() /
                              ("hv-test-qemu-" + std::to_string(getpid()) + "-" + c.scenario + "-" + c.format);
  const std::string hvc_path = scratch + "-hvc.txt", serial_path = scratch + "-serial.txt";
  const std::string scenario = c.scenario;
  const bool virtio_console =
      scenario == "virtio_console" || scenario == "virtio_msix_smp" || scenario == "virtio_console_input";
  if (virtio_console) {
    argv.insert(argv.end(),
                {"-chardev", c.console_input ? "stdio,id=hvc,signal=off" : "file,id=hvc,path=" + hvc_path, "-device",
                 "virtio-serial-pci,disable-legacy=on,vectors=3", "-device", "virtconsole,chardev=hvc"});
  }
  if (c.console_input) *std::find(argv.begin(), argv.end(), "stdio") = "file:" + serial_path;
  const ChildResult r = run_child(argv, kQemuTimeout, nullptr, c.console_input ? HVT_VIRTIO_CONSOLE_INPUT : "");
  const std::string log = transcript("qemu -kernel " + kernel, r);
  auto take_file = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    return text;
  };
  const std::string serial_output = c.console_input ? take_file(serial_path) : r.out;
  const std::string hvc_output = !virtio_console ? "" : c.console_input ? r.out : take_file(hvc_path);
  ASSERT_TRUE(r.started) << log;
  ASSERT_FALSE(r.timed_out) << log;
  EXPECT_EQ(missing_console_lines(c, serial_output, hvc_output), "") << log << "\n--- serial port:\n"
                                                                     << serial_output << "\n--- virtio console:\n"
                                                                     << hvc_output;
  if (virtio_console) {
    EXPECT_EQ(serial_output.find(HVT_VIRTIO_CONSOLE_TEXT), std::string::npos)
        << "the text went out on the serial port" << log;
    EXPECT_EQ(serial_output.find(HVT_VIRTIO_CONSOLE_ECHO), std::string::npos)
        << "the echo went out on the serial port" << log;
  }
  if (disks) EXPECT_EQ(disks->check_after_run(), "") << log;
  EXPECT_EQ(r.exit_status, c.expect == Expect::kPass ? kStatusPass : 0) << log;
}

std::string case_name(const ::testing::TestParamInfo<GuestCase>& info) {
  return std::string(info.param.scenario) + "_" + info.param.format;
}

INSTANTIATE_TEST_SUITE_P(Guests, QemuOracleTest, ::testing::ValuesIn(qemu_cases()), case_name);

}  // namespace
}  // namespace hostvisor::testing
