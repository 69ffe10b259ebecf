#!/usr/bin/env bash
# Guest instructions per second of the software CPU's interpreter alone, on
# tight loops run in-process (no VMM, no peer); CPU time of the thread. The
# whole-guest figures side by side with QEMU TCG are in guest_mips.bench.sh.
set -euo pipefail
echo "the software CPU's interpreter alone, in-process (no VMM, no devices), MIPS on the thread's CPU time; no peer"
"$1/bench/emu_mips"
