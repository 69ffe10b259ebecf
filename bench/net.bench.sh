#!/usr/bin/env bash
# User-mode NAT, VMM side alone: a host-side driver (the test guest of
# src/net/testing) hands frames to SlirpBackend, which runs on the device
# event loop as in a VM; packets per second and the process's CPU time per
# packet (driver, loop and libslirp together), best of BENCH_REPEAT runs.
# Everything stays on 127.0.0.1. The end-to-end comparison with QEMU's
# -netdev user (a guest's TCP through virtio-net) comes with the wiring.
set -euo pipefail
echo "user-mode NAT (libslirp $(pkg-config --modversion slirp 2>/dev/null || echo '?')), VMM side without a guest; no peer yet"
"$1/bench/bench_net" --repeat "${BENCH_REPEAT:-3}"
