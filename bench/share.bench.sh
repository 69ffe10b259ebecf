#!/usr/bin/env bash
# Shared folders (--share, virtio-fs; issue 15): the same file operations on
# a host directory directly and, in the same run, through the share from the
# default guest on hostvisor's software CPU, with the ratio share/host.
#   - sequential write and read of a BENCH_SHARE_MIB (default 256) MiB file,
#     1 MiB at a time (write ends with fsync; the guest drops its page cache
#     before the read, the host cannot without disturbing others, so the
#     host's read is from its page cache);
#   - BENCH_META_FILES (default 10000) x create + stat + unlink;
#   - sha256sum of a BENCH_SHA_MIB (default 64) MiB file, as Lima measures it
#     (busybox's sha256sum in the guest, coreutils' on the host).
# The operations are bench/share_ops.c, built static here and handed to the
# guest through the share itself. Target (issue 15): >= 0.5x the host for
# large sequential I/O. On emu the guest's CPU (tens of MIPS) bounds every
# figure; the ratio is hostvisor's share path and that CPU together.
# Peer: none in the same run (QEMU's virtio-fs needs an external virtiofsd
# running as root, which this project's hosts do not have).
# Usage: bench/share.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/hv-share-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/host" "$work/share" "$work/share/meta" "$work/host/meta"
cc -O2 -static -o "$work/share/share_ops" "$here/share_ops.c"
MIB=${BENCH_SHARE_MIB:-256} FILES=${BENCH_META_FILES:-10000} SHA_MIB=${BENCH_SHA_MIB:-64}
ops="$work/share/share_ops"

echo "shared folder: ${MIB} MiB sequential, ${FILES} create+stat+unlink, sha256sum of ${SHA_MIB} MiB; host directory vs --share on emu"
host_write=$("$ops" write "$work/host/big" "$MIB")
host_read=$("$ops" read "$work/host/big")
host_meta=$("$ops" meta "$work/host/meta" "$FILES")
head -c $((SHA_MIB << 20)) "$work/host/big" > "$work/host/sha"
host_sha=$(python3 -c 'import subprocess, sys, time
start = time.monotonic(); subprocess.run(["sha256sum", sys.argv[1]], stdout=subprocess.DEVNULL, check=True)
print(f"{time.monotonic() - start:.3f}")' "$work/host/sha")
rm -f "$work/host/big" "$work/host/sha"

PYTHONPATH="$here" python3 - "$hostvisor" "$work/share" "$MIB" "$FILES" "$SHA_MIB" "$host_write" "$host_read" "$host_meta" "$host_sha" <<'PY'
import re, sys
from guest_console import Console

hostvisor, share, mib, files, sha_mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host = dict(zip(["write", "read", "meta", "sha"], map(float, sys.argv[6:10])))
console = Console("hostvisor", [hostvisor, "run", "--accel", "emu", "--net", "none", "--memory", "1G",
                                "--share", share + ",tag=bench"])
try:
    console.wait_for(b"Type 'poweroff' to stop.", 300)

    def seconds(command, timeout=1800):
        out = console.run(command, timeout).decode(errors="replace")
        found = re.findall(r"^(\d+\.\d+)\r?$", out, re.M)
        if not found:
            raise RuntimeError(f"`{command}` printed no time:\n{out[-800:]}")
        return float(found[-1])

    guest = {}
    guest["write"] = seconds(f"/mnt/bench/share_ops write /mnt/bench/big {mib}")
    console.run("sync; echo 3 > /proc/sys/vm/drop_caches", 120)
    guest["read"] = seconds("/mnt/bench/share_ops read /mnt/bench/big")
    guest["meta"] = seconds(f"/mnt/bench/share_ops meta /mnt/bench/meta {files}")
    console.run(f"head -c {sha_mib << 20} /mnt/bench/big > /mnt/bench/sha; sync; echo 3 > /proc/sys/vm/drop_caches", 600)
    guest["sha"] = seconds("s=$(cut -d' ' -f1 /proc/uptime); sha256sum /mnt/bench/sha >/dev/null; "
                           "e=$(cut -d' ' -f1 /proc/uptime); awk -v s=$s -v e=$e 'BEGIN {printf \"%.3f\\n\", e - s}'")
finally:
    console.close()

def line(name, unit, host_value, guest_value, higher_is_better):
    ratio = guest_value / host_value if higher_is_better else host_value / guest_value
    print(f"  {name:<32} host {host_value:10.1f} {unit:<6} share {guest_value:10.1f} {unit:<6} ratio {ratio:.3f}x")

line(f"sequential write {mib} MiB", "MB/s", mib * 1.048576 / host["write"], mib * 1.048576 / guest["write"], True)
line(f"sequential read {mib} MiB", "MB/s", mib * 1.048576 / host["read"], mib * 1.048576 / guest["read"], True)
line(f"{files} create+stat+unlink", "ops/s", files / host["meta"], files / guest["meta"], True)
line(f"sha256sum {sha_mib} MiB", "s", host["sha"], guest["sha"], False)
print("  (ratio: share / host, higher is better; target >= 0.5x for large sequential I/O)")
PY
