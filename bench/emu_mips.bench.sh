#!/usr/bin/env bash
# Guest instructions per second of the software CPU (no peer on this host:
# QEMU TCG figures, where available, are for comparison by hand).
set -euo pipefail
"$1/bench/emu_mips"
