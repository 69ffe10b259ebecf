#!/usr/bin/env bash
# Boots a test kernel in QEMU (TCG) as an oracle for hostvisor:
#   run-qemu.sh IMAGE [--bootinfo | --virtio-blk | --virtio-console]
# Two CPUs (for the smp kernel; the others use one).
# --bootinfo passes the command line, a generated test initrd and 64 MiB of RAM
# that the bootinfo scenario expects. --virtio-blk attaches the two disks the
# virtio_blk scenario expects (generated, modern-only virtio-blk-pci);
# --virtio-console a virtio console whose port 0 output is printed after the
# run. Exits with QEMU's status (33 = PASS, 35 = FAIL through isa-debug-exit).
set -euo pipefail
image=${1:?usage: run-qemu.sh IMAGE [--bootinfo | --virtio-blk | --virtio-console]}
args=()
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
case "${2:-}" in
  --bootinfo)
    python3 - "$scratch/initrd" <<'PY'
import struct, sys
payload = bytes((i * 7 + 3) & 0xff for i in range(4080))
h = 2166136261
for b in payload:
    h = ((h ^ b) * 16777619) & 0xffffffff
open(sys.argv[1], "wb").write(struct.pack("<IIII", 0x49545648, 16 + len(payload), h, 0) + payload)
PY
    args=(-initrd "$scratch/initrd" -append "hv-test-cmdline=42 foo")
    ;;
  --virtio-blk)
    # hvt_disk_byte() of include/guest_contract.h, 64 sectors per disk.
    python3 - "$scratch" <<'PY'
import sys
for disk in (0, 1):
    data = bytes((s * 13 + o * 7 + (o >> 8) * 53 + disk * 101 + 1) & 0xff for s in range(64) for o in range(512))
    open(f"{sys.argv[1]}/disk{disk}.img", "wb").write(data)
PY
    args=(-drive "if=none,id=rw,format=raw,file=$scratch/disk0.img"
          -device virtio-blk-pci,drive=rw,disable-legacy=on,serial=hostvisor-disk0
          -drive "if=none,id=ro,format=raw,readonly=on,file=$scratch/disk1.img"
          -device virtio-blk-pci,drive=ro,disable-legacy=on,serial=hostvisor-disk1)
    ;;
  --virtio-console)
    args=(-chardev "file,id=hvc,path=$scratch/hvc.txt" -device virtio-serial-pci,disable-legacy=on,vectors=3
          -device virtconsole,chardev=hvc)
    ;;
  "") ;;
  *) echo "run-qemu.sh: unknown option $2" >&2; exit 2 ;;
esac
status=0
timeout 30 qemu-system-x86_64 -accel tcg -nographic -no-reboot -smp 2 -m 64 -net none \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio -monitor none -display none \
  -kernel "$image" "${args[@]}" || status=$?
if [ -f "$scratch/hvc.txt" ]; then
  echo "--- virtio console port 0:"
  cat "$scratch/hvc.txt"
fi
exit "$status"
