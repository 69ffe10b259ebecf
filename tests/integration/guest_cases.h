// The test kernels (tests/guests) and what each is expected to do, shared by
// the hostvisor boot tests and the QEMU oracle.
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "child_process.h"

namespace hostvisor::testing {

constexpr int kStatusPass = 33;  // debug-exit 0x10: (0x10 << 1) | 1
constexpr int kStatusFail = 35;  // debug-exit 0x11

enum class Expect {
  kPass,         // PASS line, status 33
  kReset,        // the VMM reports a reset
  kTripleFault,  // the VMM reports a triple fault / shutdown
};

struct GuestCase {
  const char* scenario;
  const char* format;
  Expect expect;
  // Uses instructions that a software /dev/kvm (kvm_pvm) cannot execute:
  // on such a host the kvm run is skipped, loudly.
  bool needs_hardware_kvm = false;
  int cpus = 1;
  // Boots with the two test disks (TestDisks): a writable and a read-only one.
  bool test_disks = false;
  // The host types HVT_VIRTIO_CONSOLE_INPUT into the virtio console.
  bool console_input = false;
};

// Names the case in gtest's output instead of dumping its bytes.
inline void PrintTo(const GuestCase& c, std::ostream* os) { *os << c.scenario << "." << c.format; }

// Every scenario in every format it is built in (tests/guests/CMakeLists.txt).
extern const std::vector<GuestCase> kGuestCases;

// The kernel file of a case in the build tree.
std::string guest_image(const GuestCase& c);

// Whether the case needs the command line and initrd the bootinfo kernel checks.
bool needs_boot_payload(const GuestCase& c);

// Writes the initrd the bootinfo kernel verifies (header + pseudo-random
// payload of an odd size) to a new temporary file and removes it on destruction.
// A corrupt one has one payload byte changed after the checksum was taken.
class TestInitrd {
 public:
  explicit TestInitrd(bool corrupt = false);
  ~TestInitrd();
  TestInitrd(const TestInitrd&) = delete;
  TestInitrd& operator=(const TestInitrd&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The virtio_blk kernel's two disks (guest_contract.h): raw images of
// HVT_BLK_SECTORS sectors filled with hvt_disk_byte(), in new temporary files
// removed on destruction. `damaged` changes one byte of the writable disk's
// HVT_BLK_READ_SECTOR, which the kernel must notice.
class TestDisks {
 public:
  explicit TestDisks(bool damaged = false);
  ~TestDisks();
  TestDisks(const TestDisks&) = delete;
  TestDisks& operator=(const TestDisks&) = delete;
  std::string writable_path() const { return paths_[0].string(); }
  std::string read_only_path() const { return paths_[1].string(); }
  // After a passing run: the writable disk holds hvt_guest_byte() in the
  // sectors the kernel wrote and the test's pattern everywhere else, the
  // read-only disk is unchanged. Empty when so, else what differs.
  std::string check_after_run() const;

 private:
  std::filesystem::path paths_[2];
};

// Checks shared by both runners: the console lines a kernel prints for its
// expectation. `virtio_console` is what the VMM's virtio console wrote (for
// hostvisor, the same stdout). Returns an empty string when they are there,
// else what is missing.
std::string missing_console_lines(const GuestCase& c, const std::string& console, const std::string& virtio_console);

// The whole run, for failure messages.
std::string transcript(const std::string& what, const ChildResult& r);

// How many times `needle` occurs in `haystack` (overlaps counted).
size_t count_occurrences(const std::string& haystack, const std::string& needle);

}  // namespace hostvisor::testing
