// The default guest: Debian's stock cloud kernel with a busybox initramfs
// that hostvisor assembles itself, on first use, into a cache directory.
// Everything comes from Debian packages fetched with `apt-get download` and
// unpacked with `dpkg-deb -x` — nothing is installed on the host.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::guest {

struct DefaultGuest {
  std::string kernel_path;     // the bzImage
  std::string initrd_path;     // newc cpio written by hostvisor
  std::string cmdline;         // what to boot it with
  std::string kernel_release;  // e.g. 6.1.0-56-cloud-amd64
};

// The hostvisor-agent the default guest ships: the one beside the running
// executable (an installed hostvisor), else the one this build made; empty
// when there is neither.
std::string find_guest_agent();

struct DefaultGuestOptions {
  std::string cache_dir;  // empty: $XDG_CACHE_HOME/hostvisor or ~/.cache/hostvisor
  std::string kernel_package = "linux-image-cloud-amd64";
  std::string busybox_package = "busybox-static";
  // Modules the stock kernel needs for hostvisor's devices (the kernel has
  // them as modules); their dependencies are added from each .modinfo.
  std::vector<std::string> modules = {"virtio_pci",
                                      "virtio_mmio",
                                      "virtio_blk",
                                      "virtio_net",
                                      "virtio_console",
                                      "virtio-rng",
                                      "virtio_balloon",
                                      "vsock",
                                      "vmw_vsock_virtio_transport_common",
                                      "vmw_vsock_virtio_transport",
                                      "virtiofs",
                                      // The ACPI power button as an input device, for acpid:
                                      // `hostvisor vm stop` and the control socket's powerdown.
                                      "button",
                                      "evdev"};
  // (ext4, for the /data disk, and its crc32c are built into the kernel.)
  // mke2fs, as /sbin/mkfs.ext4, with the shared libraries it loads (busybox
  // only makes ext2): the package holding it and those holding the libraries
  // and the dynamic loader.
  std::vector<std::string> mkfs_packages = {"e2fsprogs",  "libext2fs2", "libcom-err2",
                                            "libblkid1", "libuuid1",   "libc6"};
  // The hostvisor-agent binary to ship in /sbin and start from /init; empty:
  // a guest without the agent. The cache manifest holds a hash of it and of
  // init's scripts, so a rebuilt agent or a changed init rebuilds the
  // initramfs. The default is what `hostvisor run` ships, so every program
  // that prepares the default guest (the tests too) agrees on the one in the
  // shared cache instead of rebuilding it under each other.
  std::string agent_path = find_guest_agent();
  std::function<void(const std::string&)> progress;  // one line per step, for the user
  // The guest's console, where the kernel's messages and the shell go:
  // "ttyS0" (the UART) or "hvc0" (the virtio console).
  std::string console = "ttyS0";
};

// The cache directory hostvisor uses by default.
Result<std::string> default_cache_dir();

// Returns the cached default guest, building it first if it is not there.
Result<DefaultGuest> prepare_default_guest(const DefaultGuestOptions& options);

// A short content hash of a file's bytes (FNV-1a, 64 bits, hex), for the
// manifest: it only has to tell one build of the agent from another.
std::string content_hash(const std::string& bytes);

// The kernel command line with the console (and the shell) on `console`.
std::string default_guest_cmdline(const std::string& console);

// The /init script and /etc/inittab of the initramfs (exposed for tests).
std::string default_guest_init_script();
std::string default_guest_inittab();
// /etc/udhcpc/hostvisor.script: what udhcpc runs on a lease, in every NIC's
// DHCP client that /init starts (address, default route, resolv.conf).
std::string default_guest_dhcp_script();

}  // namespace hostvisor::guest
