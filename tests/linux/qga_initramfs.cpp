#include "tests/linux/qga_initramfs.h"

#include "guest/default_guest/default_guest.h"
#include "tests/linux/initramfs_appendix.h"

namespace hostvisor::testing {

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
  InitramfsAppendix appendix;
  // The guest paths are the host's (the loader's own path is baked into qemu-ga).
  HV_TRY(appendix.add_host_program(kQemuGaPath));
  HV_TRY(appendix.add_file("/usr/sbin/qga-start", qga_start_script(), 0755));
  // qemu-ga's guest-shutdown runs /sbin/shutdown -P|-r|-H +0, which
  // busybox does not have: its poweroff, reboot and halt do the same.
  HV_TRY(appendix.add_file("/sbin/shutdown", R"sh(#!/bin/sh
case " $* " in
  *" -r "*) exec /bin/busybox reboot ;;
  *" -H "*) exec /bin/busybox halt ;;
  *) exec /bin/busybox poweroff ;;
esac
)sh",
                           0755));
  // The default guest's inittab (the console's shell), and qemu-ga kept running.
  HV_TRY(appendix.add_file("/etc/inittab", guest::default_guest_inittab() + "::respawn:/usr/sbin/qga-start\n"));
  HV_TRY(appendix.add_file("/etc/os-release",
                           "PRETTY_NAME=\"hostvisor qemu-ga test guest\"\nNAME=hostvisor\nID=hostvisor\n"));
  return appendix.write_after(default_initrd_path, out_path);
}

}  // namespace hostvisor::testing
