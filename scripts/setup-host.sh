#!/usr/bin/env bash
# Installs the Debian packages hostvisor builds, runs and tests with. Idempotent:
# does nothing when everything is there. As root it runs apt-get directly;
# otherwise through sudo (only for apt).
set -euo pipefail

packages=(
  # build (libglib2.0-dev: slirp.pc requires glib-2.0, so pkg-config finds libslirp only with it)
  cmake ninja-build clang lld pkg-config
  libzydis-dev liburing-dev libslirp-dev libglib2.0-dev libseccomp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev zlib1g-dev
  # the daemon's HTTP and WebSocket API (Boost.Beast, header-only) and its tests' client
  libboost-dev curl
  # the web console's terminal (xterm.js: Debian 12's libjs-xterm bundle is a stub, node-xterm has its
  # modules) and its browser test (headless chromium driven through chromedriver's WebDriver)
  libjs-xterm node-xterm chromium chromium-driver
  # default guest and test images
  busybox-static cpio e2fsprogs iproute2
  # the shared-folder test builds a C project in the default guest with the host's tcc and make
  tcc make
  # test peers: python3 serves HTTP on loopback to NAT guests, and runs the benchmark drivers
  python3
  # interoperability oracles and peers (dnsmasq-base: the LAN's DHCP server in the bridged-network test;
  # qemu-guest-agent: its qemu-ga goes into the qemu-ga test guest's initramfs, never runs on the host)
  qemu-utils qemu-system-x86 acpica-tools dnsmasq-base qemu-guest-agent
  # firmware (--firmware bios|uefi; qemu-system-data has the linuxboot option ROM for --kernel with firmware)
  # and the firmware tests' boot media (grub-mkrescue needs grub-common, the two GRUB platforms, xorriso, mtools;
  # the UEFI test's GPT disk: sgdisk from gdisk, its EFI system partition formatted and filled with mtools)
  seabios ovmf qemu-system-data grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools gdisk
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "hostvisor set-up: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
