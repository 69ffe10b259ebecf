#include "guest_cases.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "guest_contract.h"

namespace hostvisor::testing {

const std::vector<GuestCase> kGuestCases = {
    {"hello", "elf64", Expect::kPass},
    {"hello", "pvh", Expect::kPass},
    {"hello", "multiboot", Expect::kPass},
    {"hello", "bzimage", Expect::kPass},
    // On elf64 only the entry state and the identity map are checked: the
    // plain ELF64 protocol passes no boot information.
    {"bootinfo", "elf64", Expect::kPass},
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
    {"smp", "elf64", Expect::kPass, false, 2},
    {"smp", "pvh", Expect::kPass, false, 2},
    {"smc_smp", "pvh", Expect::kPass, false, 2},
    {"smc_smp_serialized", "pvh", Expect::kPass, false, 2},
    {"virtio_blk", "elf64", Expect::kPass, false, 1, true},
    {"virtio_blk", "pvh", Expect::kPass, false, 1, true},
    {"virtio_blk", "multiboot", Expect::kPass, false, 1, true},
    {"virtio_console", "elf64", Expect::kPass},
    {"virtio_console", "pvh", Expect::kPass},
    {"virtio_console", "multiboot", Expect::kPass},
    {"virtio_console_input", "elf64", Expect::kPass, false, 1, false, true},
    {"virtio_console_input", "pvh", Expect::kPass, false, 1, false, true},
    {"virtio_msix_smp", "elf64", Expect::kPass, false, 2},
    {"virtio_msix_smp", "pvh", Expect::kPass, false, 2},
};

std::string guest_image(const GuestCase& c) { return std::string(HV_GUESTS_DIR) + "/" + c.scenario + "." + c.format; }

bool needs_boot_payload(const GuestCase& c) { return std::strcmp(c.scenario, "bootinfo") == 0; }

TestInitrd::TestInitrd(bool corrupt) {
  static int counter = 0;
  path_ = std::filesystem::temp_directory_path() /
          ("hv-test-initrd-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".img");
  std::vector<uint8_t> payload(8192 - sizeof(hvt_initrd_header) - 5);
  uint32_t x = 0x12345678;
  for (uint8_t& b : payload) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 16);
  }
  hvt_initrd_header header{};
  header.magic = HVT_INITRD_MAGIC;
  header.total_size = static_cast<uint32_t>(sizeof(header) + payload.size());
  header.payload_fnv1a = hvt_fnv1a(payload.data(), static_cast<uint32_t>(payload.size()));
  if (corrupt) payload[payload.size() / 2] ^= 0x40;
  std::ofstream out(path_, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&header), sizeof(header));
  out.write(reinterpret_cast<const char*>(payload.data()), static_cast<std::streamsize>(payload.size()));
}

TestInitrd::~TestInitrd() {
  std::error_code ignored;
  std::filesystem::remove(path_, ignored);
}

TestDisks::TestDisks(bool damaged) {
  static int counter = 0;
  for (uint32_t disk = 0; disk < 2; disk++) {
    paths_[disk] = std::filesystem::temp_directory_path() /
                   ("hv-test-disk-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".img");
    std::vector<uint8_t> image(HVT_BLK_SECTORS * 512);
    for (size_t i = 0; i < image.size(); i++) image[i] = hvt_disk_byte(disk, i / 512, i % 512);
    if (damaged && disk == 0) image[HVT_BLK_READ_SECTOR * 512 + 300] ^= 0x10;
    std::ofstream out(paths_[disk], std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
  }
}

TestDisks::~TestDisks() {
  std::error_code ignored;
  for (const auto& path : paths_) std::filesystem::remove(path, ignored);
}

std::string TestDisks::check_after_run() const {
  for (uint32_t disk = 0; disk < 2; disk++) {
    std::ifstream in(paths_[disk], std::ios::binary);
    std::vector<char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = disk == 0 ? "writable disk" : "read-only disk";
    if (image.size() != HVT_BLK_SECTORS * 512)
      return name + ": the image is " + std::to_string(image.size()) + " bytes, expected " +
             std::to_string(HVT_BLK_SECTORS * 512);
    for (size_t i = 0; i < image.size(); i++) {
      const uint64_t sector = i / 512;
      const uint32_t offset = i % 512;
      const bool written =
          disk == 0 && sector >= HVT_BLK_WRITE_SECTOR && sector < HVT_BLK_WRITE_SECTOR + HVT_BLK_WRITE_COUNT;
      const uint8_t want = written ? hvt_guest_byte(sector, offset) : hvt_disk_byte(disk, sector, offset);
      const auto got = static_cast<uint8_t>(image[i]);
      if (got != want)
        return name + ": sector " + std::to_string(sector) + " byte " + std::to_string(offset) + " is " +
               std::to_string(got) + ", expected " + std::to_string(want) +
               (written ? " (written by the guest)" : " (the test's pattern)");
    }
  }
  return "";
}

namespace {
bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}
size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) n++;
  return n;
}
}  // namespace

std::string missing_console_lines(const GuestCase& c, const std::string& console, const std::string& virtio_console) {
  const std::string scenario = c.scenario;
  if (contains(console, "FAIL " + scenario)) return "the kernel reported FAIL";
  switch (c.expect) {
    case Expect::kPass:
      if (!contains(console, "PASS " + scenario + "\n")) return "no \"PASS " + scenario + "\" line";
      if (scenario == "hello" && !contains(console, std::string("hello from ") + c.format + "\n"))
        return std::string("no \"hello from ") + c.format + "\" line";
      if (scenario == "uart" && contains(console, HVT_UART_LOOPBACK_TEXT))
        return "the loopback bytes leaked to the console";
      // The spec only says SHOULD; hostvisor and QEMU both announce it.
      if (scenario == "virtio_blk" && !contains(console, "DEVICE_NEEDS_RESET, with a configuration interrupt"))
        return "no configuration interrupt announced DEVICE_NEEDS_RESET";
      if (scenario == "virtio_console_input" &&
          !contains(virtio_console, HVT_VIRTIO_CONSOLE_ECHO HVT_VIRTIO_CONSOLE_INPUT))
        return "the virtio console's output lacks the echo \"" HVT_VIRTIO_CONSOLE_ECHO "\" of the typed line";
      if ((scenario == "virtio_console" || scenario == "virtio_msix_smp") &&
          count(virtio_console, HVT_VIRTIO_CONSOLE_TEXT) != 2)
        return "the virtio console's output has \"" HVT_VIRTIO_CONSOLE_TEXT "\" " +
               std::to_string(count(virtio_console, HVT_VIRTIO_CONSOLE_TEXT)) + " times, expected 2";
      return "";
    case Expect::kReset: return contains(console, "reset: resetting through the i8042") ? "" : "no \"resetting\" line";
    case Expect::kTripleFault:
      return contains(console, "triplefault: loading a null IDT and executing ud2") ? "" : "no \"executing ud2\" line";
  }
  return "unknown expectation";
}

std::string transcript(const std::string& what, const ChildResult& r) {
  return "\n--- " + what + "\n--- " + r.describe() + " after " + std::to_string(r.elapsed.count()) +
         " ms\n--- stdout:\n" + r.out + "\n--- stderr:\n" + r.err;
}

size_t count_occurrences(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) n++;
  return n;
}

}  // namespace hostvisor::testing
