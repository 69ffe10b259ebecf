#!/usr/bin/env bash
# Boots a test kernel in QEMU (TCG) as an oracle for hostvisor:
#   run-qemu.sh IMAGE [--bootinfo]
# Two CPUs (for the smp kernel; the others use one).
# --bootinfo passes the command line, a generated test initrd and 64 MiB of RAM
# that the bootinfo scenario expects. Exits with QEMU's status (33 = PASS,
# 35 = FAIL through isa-debug-exit).
set -euo pipefail
image=${1:?usage: run-qemu.sh IMAGE [--bootinfo]}
args=()
if [ "${2:-}" = "--bootinfo" ]; then
  initrd=$(mktemp)
  trap 'rm -f "$initrd"' EXIT
  python3 - "$initrd" <<'PY'
import struct, sys
payload = bytes((i * 7 + 3) & 0xff for i in range(4080))
h = 2166136261
for b in payload:
    h = ((h ^ b) * 16777619) & 0xffffffff
open(sys.argv[1], "wb").write(struct.pack("<IIII", 0x49545648, 16 + len(payload), h, 0) + payload)
PY
  args=(-initrd "$initrd" -append "hv-test-cmdline=42 foo")
fi
timeout 30 qemu-system-x86_64 -accel tcg -nographic -no-reboot -smp 2 -m 64 -net none \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio -monitor none -display none \
  -kernel "$image" "${args[@]}"
