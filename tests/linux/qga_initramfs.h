// The qemu-guest-agent test guest: the default guest's initramfs with a
// second cpio archive appended (the kernel unpacks both, the second over the
// first) that adds the host's Debian /usr/sbin/qemu-ga with the shared
// libraries ldd lists, and an inittab line that starts it on the
// org.qemu.guest_agent.0 port, and a /sbin/shutdown for its guest-shutdown
// (busybox has poweroff and reboot but no shutdown). There is no udev in the guest, so the start
// script finds the port's /dev/vportNpM through /sys/class/virtio-ports.
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::testing {

inline constexpr const char* kQemuGaPath = "/usr/sbin/qemu-ga";

// Writes the test initramfs to `out_path`: `default_initrd_path` followed by
// the qemu-ga archive.
Result<void> build_qga_initramfs(const std::string& default_initrd_path, const std::string& out_path);

// The script the guest runs (exposed for the message of a failing test).
std::string qga_start_script();

}  // namespace hostvisor::testing
