// Boots each test kernel of tests/guests with `hostvisor run` and checks what
// it printed on the serial console and how hostvisor ended. A scenario that
// passes ends with "PASS <scenario>" and exit status 33 (debug-exit 0x10).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "child_process.h"
#include "guest_contract.h"
#include "hv/accel.h"

namespace hostvisor::testing {
namespace {

// The CPU backends the guests run on. Add "emu" here when the software CPU
// can boot the test kernels; every case then runs on both.
const std::vector<std::string> kAccelerators = {"kvm"};

constexpr auto kGuestTimeout = std::chrono::seconds(60);
constexpr int kStatusPass = (HVT_EXIT_PASS << 1) | 1;  // 33
constexpr int kStatusFail = (HVT_EXIT_FAIL << 1) | 1;  // 35

enum class Expect {
  kPass,         // PASS line, status 33
  kReset,        // hostvisor reports a reset, non-zero status
  kTripleFault,  // hostvisor reports a triple fault / shutdown, non-zero status
};

struct GuestCase {
  const char* scenario;
  const char* format;
  Expect expect;
  // Uses instructions that a software /dev/kvm (kvm_pvm) cannot execute:
  // on such a host the kvm run is skipped, loudly.
  bool needs_hardware_kvm = false;
};

// Every scenario in every format it is built in (tests/guests/CMakeLists.txt).
// bootinfo.elf64 is built but not listed: hostvisor's plain-ELF64 protocol
// passes no boot information (RSI = 0), so there is nothing to check.
const GuestCase kCases[] = {
    {"hello", "elf64", Expect::kPass},
    {"hello", "pvh", Expect::kPass},
    {"hello", "multiboot", Expect::kPass},
    {"hello", "bzimage", Expect::kPass},
    {"bootinfo", "pvh", Expect::kPass},
    {"bootinfo", "multiboot", Expect::kPass},
    {"bootinfo", "bzimage", Expect::kPass},
    {"exceptions", "elf64", Expect::kPass},
    {"exceptions", "pvh", Expect::kPass},
    {"breakpoint", "elf64", Expect::kPass, true},
    {"breakpoint", "pvh", Expect::kPass, true},
    {"uart", "elf64", Expect::kPass},
    {"uart", "pvh", Expect::kPass},
    {"rtc", "elf64", Expect::kPass},
    {"rtc", "pvh", Expect::kPass},
    {"reset", "elf64", Expect::kReset},
    {"reset", "pvh", Expect::kReset},
    {"triplefault", "elf64", Expect::kTripleFault},
    {"triplefault", "pvh", Expect::kTripleFault},
};

// Names the case in gtest's output instead of dumping its bytes.
void PrintTo(const GuestCase& c, std::ostream* os) { *os << c.scenario << "." << c.format; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The initrd the bootinfo kernel verifies: header + pseudo-random payload.
std::vector<uint8_t> make_test_initrd(uint32_t payload_size) {
  std::vector<uint8_t> payload(payload_size);
  uint32_t x = 0x12345678;
  for (uint8_t& b : payload) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 16);
  }
  hvt_initrd_header header{};
  header.magic = HVT_INITRD_MAGIC;
  header.total_size = static_cast<uint32_t>(sizeof(header) + payload.size());
  header.payload_fnv1a = hvt_fnv1a(payload.data(), static_cast<uint32_t>(payload.size()));
  std::vector<uint8_t> file(sizeof(header));
  std::memcpy(file.data(), &header, sizeof(header));
  file.insert(file.end(), payload.begin(), payload.end());
  return file;
}

class GuestBootTest : public ::testing::TestWithParam<std::tuple<GuestCase, std::string>> {
 protected:
  void SetUp() override {
    const auto& [c, accel] = GetParam();
    if (accel != "kvm") return;
    const HostVirtualization host = probe_host_virtualization();
    if (!host.dev_kvm_usable) {
      GTEST_SKIP() << "\n*** /dev/kvm is missing or not accessible (" << host.dev_kvm_problem
                   << "): the kvm guest boot tests did NOT run. ***\n"
                   << "*** Load the kvm module and give this user access to /dev/kvm to run them. ***";
    }
    if (c.needs_hardware_kvm && host.software_kvm_module) {
      GTEST_SKIP() << "\n*** " << c.scenario << "." << c.format << " did NOT run on kvm: /dev/kvm is provided by "
                   << host.software_kvm_module_name
                   << ", whose instruction emulator cannot execute INT3/INT n. It needs VT-x/AMD-V. ***";
    }
  }
  void TearDown() override {
    std::error_code ignored;
    if (!initrd_.empty()) std::filesystem::remove(initrd_, ignored);
  }

  std::string write_initrd() {
    initrd_ = std::filesystem::temp_directory_path() / ("hv-initrd-" + std::to_string(getpid()) + ".img");
    std::vector<uint8_t> bytes = make_test_initrd(8192 - sizeof(hvt_initrd_header) - 5);  // odd size on purpose
    std::ofstream out(initrd_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    return initrd_.string();
  }

  std::filesystem::path initrd_;
};

TEST_P(GuestBootTest, BootsAndReports) {
  const auto& [c, accel] = GetParam();
  const std::string kernel = std::string(HV_GUESTS_DIR) + "/" + c.scenario + "." + c.format;
  ASSERT_TRUE(std::filesystem::exists(kernel)) << kernel << " was not built (target hv_guest_kernels)";

  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--kernel", kernel, "--memory",    "64M",
                                   "--cpus",       "1",   "--accel",  accel,  "--debug-exit"};
  if (std::string(c.scenario) == "bootinfo") {
    argv.insert(argv.end(), {"--initrd", write_initrd(), "--append", HVT_BOOTINFO_CMDLINE});
  }

  const ChildResult r = run_child(argv, kGuestTimeout);
  RecordProperty("elapsed_ms", std::to_string(r.elapsed.count()));
  const std::string transcript = "\n--- command: hostvisor run --kernel " + kernel + " --accel " + accel + "\n--- " +
                                 r.describe() + " after " + std::to_string(r.elapsed.count()) + " ms\n--- stdout:\n" +
                                 r.out + "\n--- stderr:\n" + r.err;
  ASSERT_TRUE(r.started) << transcript;
  ASSERT_FALSE(r.timed_out) << "the guest did not finish within " << kGuestTimeout.count() << " s" << transcript;
  ASSERT_EQ(r.signal, 0) << transcript;
  EXPECT_FALSE(contains(r.out, std::string("FAIL ") + c.scenario)) << transcript;

  switch (c.expect) {
    case Expect::kPass:
      EXPECT_EQ(r.exit_status, kStatusPass) << transcript;
      EXPECT_TRUE(contains(r.out, std::string("PASS ") + c.scenario + "\n")) << transcript;
      if (std::string(c.scenario) == "hello")
        EXPECT_TRUE(contains(r.out, std::string("hello from ") + c.format + "\n")) << transcript;
      if (std::string(c.scenario) == "uart")
        EXPECT_FALSE(contains(r.out, HVT_UART_LOOPBACK_TEXT)) << "loopback bytes leaked to the console" << transcript;
      break;
    case Expect::kReset:
      EXPECT_TRUE(contains(r.out, "reset: resetting through the i8042")) << transcript;
      EXPECT_NE(r.exit_status, 0) << transcript;
      EXPECT_NE(r.exit_status, kStatusPass) << transcript;
      EXPECT_NE(r.exit_status, kStatusFail) << transcript;
      EXPECT_TRUE(contains(lower(r.err), "reset")) << "hostvisor did not say the guest reset" << transcript;
      break;
    case Expect::kTripleFault:
      EXPECT_TRUE(contains(r.out, "triplefault: loading a null IDT and executing ud2")) << transcript;
      EXPECT_NE(r.exit_status, 0) << transcript;
      EXPECT_NE(r.exit_status, kStatusPass) << transcript;
      EXPECT_NE(r.exit_status, kStatusFail) << transcript;
      EXPECT_TRUE(contains(lower(r.err), "triple fault") || contains(lower(r.err), "shutdown"))
          << "hostvisor did not report a triple fault / shutdown" << transcript;
      break;
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<GuestCase, std::string>>& info) {
  const auto& [c, accel] = info.param;
  return std::string(c.scenario) + "_" + c.format + "_" + accel;
}

INSTANTIATE_TEST_SUITE_P(Guests, GuestBootTest,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::ValuesIn(kAccelerators)),
                         case_name);

}  // namespace
}  // namespace hostvisor::testing
