#include "tests/linux/qga_initramfs.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "guest/default_guest/cpio_writer.h"
#include "guest/default_guest/default_guest.h"

namespace hostvisor::testing {

namespace fs = std::filesystem;

namespace {

Result<std::string> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kNotFound, "cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The libraries (and the dynamic loader) `binary` needs, as ldd resolves them.
Result<std::vector<std::string>> shared_libraries(const std::string& binary) {
  FILE* pipe = ::popen(("ldd " + binary + " 2>&1").c_str(), "r");
  if (!pipe) return Error::from_errno("ldd");
  std::string listing;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) listing.append(buffer, n);
  if (::pclose(pipe) != 0) return Error(ErrorCode::kIo, "ldd " + binary + " failed: " + listing);
  std::vector<std::string> libraries;
  static const std::regex kResolved(R"(=>\s+(/\S+))"), kLoader(R"(^\s*(/\S+)\s+\()");
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, kResolved) || std::regex_search(line, m, kLoader)) libraries.push_back(m[1]);
  }
  if (libraries.empty()) return Error(ErrorCode::kCorrupt, "ldd listed no libraries for " + binary + ": " + listing);
  return libraries;
}

// Adds every directory above `path` that is not in the archive yet.
Result<void> add_parents(guest::CpioWriter& cpio, std::set<std::string>& made, const fs::path& path) {
  fs::path at;
  for (const auto& part : path.parent_path().relative_path()) {
    at /= part;
    if (made.insert(at.string()).second) HV_TRY(cpio.add_directory(at.string()));
  }
  return ok();
}

}  // namespace

std::string qga_start_script() {
  return R"sh(#!/bin/sh
# Starts qemu-ga on the org.qemu.guest_agent.0 port. Without udev there is no
# /dev/virtio-ports/NAME link: find the port by its sysfs name (it appears
# once the driver has the device's PORT_NAME message) and make the link.
for attempt in $(seq 1 100); do
  for port in /sys/class/virtio-ports/*; do
    [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
    mkdir -p /dev/virtio-ports
    ln -sf "/dev/${port##*/}" /dev/virtio-ports/org.qemu.guest_agent.0
    echo "qga-start: qemu-ga on /dev/${port##*/}" >/dev/console
    exec /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -f /tmp/qemu-ga.pid -t /tmp \
      >/var/log/qemu-ga.log 2>&1
  done
  sleep 0.1
done
echo "qga-start: no org.qemu.guest_agent.0 port" >/dev/console
sleep 3600
)sh";
}

Result<void> build_qga_initramfs(const std::string& default_initrd_path, const std::string& out_path) {
  std::string image = HV_TRY(read_all(default_initrd_path));
  guest::CpioWriter cpio;
  std::set<std::string> made;
  auto add_host_file = [&](const std::string& host_path, uint32_t mode) -> Result<void> {
    // The guest path is the host's (the loader's own path is baked into qemu-ga).
    const std::string data = HV_TRY(read_all(fs::canonical(host_path)));
    HV_TRY(add_parents(cpio, made, host_path));
    return cpio.add_file(fs::path(host_path).relative_path().string(), data, mode);
  };
  HV_TRY(add_host_file(kQemuGaPath, 0755));
  for (const std::string& library : HV_TRY(shared_libraries(kQemuGaPath))) HV_TRY(add_host_file(library, 0755));
  HV_TRY(add_parents(cpio, made, "/usr/sbin/qga-start"));
  HV_TRY(cpio.add_file("usr/sbin/qga-start", qga_start_script(), 0755));
  // qemu-ga's guest-shutdown runs /sbin/shutdown -P|-r|-H +0, which
  // busybox does not have: its poweroff, reboot and halt do the same.
  HV_TRY(add_parents(cpio, made, "/sbin/shutdown"));
  HV_TRY(cpio.add_file("sbin/shutdown", R"sh(#!/bin/sh
case " $* " in
  *" -r "*) exec /bin/busybox reboot ;;
  *" -H "*) exec /bin/busybox halt ;;
  *) exec /bin/busybox poweroff ;;
esac
)sh", 0755));
  HV_TRY(add_parents(cpio, made, "/etc/inittab"));
  // The default guest's inittab (the console's shell), and qemu-ga kept running.
  HV_TRY(cpio.add_file("etc/inittab", guest::default_guest_inittab() + "::respawn:/usr/sbin/qga-start\n"));
  HV_TRY(cpio.add_file("etc/os-release", "PRETTY_NAME=\"hostvisor qemu-ga test guest\"\nNAME=hostvisor\nID=hostvisor\n"));
  const std::vector<uint8_t> appendix = cpio.finish();
  // Each archive of a concatenation starts 4-byte aligned (newc already is).
  image.append(reinterpret_cast<const char*>(appendix.data()), appendix.size());
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out.write(image.data(), static_cast<std::streamsize>(image.size()));
  if (!out) return Error(ErrorCode::kIo, "cannot write " + out_path);
  return ok();
}

}  // namespace hostvisor::testing
