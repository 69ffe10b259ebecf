#!/usr/bin/env bash
# Shared folders (--share, virtio-fs; issue 15): the same file operations on
# a host directory directly and, in the same run, through the share from the
# default guest on hostvisor's software CPU, with the ratio share/host.
#   - sequential write and read of a BENCH_SHARE_MIB (default 256) MiB file,
#     1 MiB at a time (write ends with fsync). Reads twice: warm (the file in
#     the host's page cache, as it is right after the write) and cold (that
#     one file's pages dropped from the host's page cache with
#     POSIX_FADV_DONTNEED, so the host reads its disk; nobody else's cache is
#     touched). The guest drops its own page cache before each read;
#   - the same through a second share of the same directory with
#     cache=never (direct I/O: the host reads into the guest program's own
#     buffer, past the guest's page cache);
#   - BENCH_META_FILES (default 10000) x create + stat + unlink;
#   - sha256sum of a BENCH_SHA_MIB (default 64) MiB file, as Lima measures it
#     (busybox's sha256sum in the guest, coreutils' on the host).
# What bounds the guest: the same read, create+stat+unlink and sha256sum on
# the guest's own RAM (its initramfs root), with no share involved, and the
# CPU time of hostvisor's threads during the share's read (the vCPU, which
# sleeps while the guest halts, against the share's workers).
# The operations are bench/share_ops.c, built static here and handed to the
# guest through the share itself. Target (issue 15): >= 0.5x the host for
# large sequential I/O.
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
# Drops one file's pages from the host's page cache (written back first).
drop_host_cache() {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}
host_write=$("$ops" write "$work/host/big" "$MIB")
host_read=$("$ops" read "$work/host/big")
drop_host_cache "$work/host/big"
host_cold=$("$ops" read "$work/host/big")
host_meta=$("$ops" meta "$work/host/meta" "$FILES")
head -c $((SHA_MIB << 20)) "$work/host/big" > "$work/host/sha"
host_sha=$(python3 -c 'import subprocess, sys, time
start = time.monotonic(); subprocess.run(["sha256sum", sys.argv[1]], stdout=subprocess.DEVNULL, check=True)
print(f"{time.monotonic() - start:.3f}")' "$work/host/sha")
rm -f "$work/host/big" "$work/host/sha"

PYTHONPATH="$here" python3 - "$hostvisor" "$work/share" "$MIB" "$FILES" "$SHA_MIB" "$host_write" "$host_read" "$host_cold" "$host_meta" "$host_sha" <<'PY'
import os, re, sys
from guest_console import Console

hostvisor, share, mib, files, sha_mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host = dict(zip(["write", "read", "cold", "meta", "sha"], map(float, sys.argv[6:11])))
# Two shares of one directory: the default cache policy and direct I/O.
console = Console("hostvisor", [hostvisor, "run", "--accel", "emu", "--net", "none", "--memory", "1G",
                                "--share", share + ",tag=bench", "--share", share + ",tag=direct,cache=never"])

def drop_host_cache(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)

def thread_seconds():
    """CPU seconds of each of hostvisor's threads."""
    pid, out = console.child.pid, {}
    for task in os.listdir(f"/proc/{pid}/task"):
        fields = open(f"/proc/{pid}/task/{task}/stat").read().rsplit(")", 1)[1].split()
        out[task] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out

try:
    console.wait_for(b"Type 'poweroff' to stop.", 300)

    def seconds(command, timeout=1800):
        out = console.run(command, timeout).decode(errors="replace")
        found = re.findall(r"^(\d+\.\d+)\r?$", out, re.M)
        if not found:
            raise RuntimeError(f"`{command}` printed no time:\n{out[-800:]}")
        return float(found[-1])

    def drop_guest_cache():
        console.run("sync; echo 3 > /proc/sys/vm/drop_caches", 120)

    guest = {}
    guest["write"] = seconds(f"/mnt/bench/share_ops write /mnt/bench/big {mib}")
    drop_guest_cache()
    before = thread_seconds()
    guest["read"] = seconds("/mnt/bench/share_ops read /mnt/bench/big")
    after = thread_seconds()
    busy = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
    drop_guest_cache()
    drop_host_cache(share + "/big")
    guest["cold"] = seconds("/mnt/bench/share_ops read /mnt/bench/big")
    guest["direct"] = seconds("/mnt/direct/share_ops read /mnt/direct/big")
    drop_host_cache(share + "/big")
    guest["direct_cold"] = seconds("/mnt/direct/share_ops read /mnt/direct/big")
    guest["direct_write"] = seconds(f"/mnt/direct/share_ops write /mnt/direct/big2 {mib}")
    console.run("rm /mnt/bench/big2", 120)
    # The bound: the guest's own RAM, no share.
    console.run(f"/mnt/bench/share_ops write /ram-big {mib} >/dev/null", 600)
    guest["ram"] = seconds("/mnt/bench/share_ops read /ram-big")
    console.run("rm /ram-big", 120)
    guest["meta"] = seconds(f"/mnt/bench/share_ops meta /mnt/bench/meta {files}")
    console.run("mkdir /ram-meta", 60)
    guest["ram_meta"] = seconds(f"/mnt/bench/share_ops meta /ram-meta {files}")
    console.run(f"head -c {sha_mib << 20} /mnt/bench/big > /mnt/bench/sha; cp /mnt/bench/sha /ram-sha; "
                "sync; echo 3 > /proc/sys/vm/drop_caches", 600)

    def sha_seconds(path):
        return seconds(f"s=$(cut -d' ' -f1 /proc/uptime); sha256sum {path} >/dev/null; "
                       "e=$(cut -d' ' -f1 /proc/uptime); awk -v s=$s -v e=$e 'BEGIN {printf \"%.3f\\n\", e - s}'")

    guest["sha"] = sha_seconds("/mnt/bench/sha")
    guest["ram_sha"] = sha_seconds("/ram-sha")
finally:
    console.close()

def mbps(value):
    return mib * 1.048576 / value

def line(name, unit, host_value, guest_value, higher_is_better):
    ratio = guest_value / host_value if higher_is_better else host_value / guest_value
    print(f"  {name:<40} host {host_value:10.1f} {unit:<6} share {guest_value:10.1f} {unit:<6} ratio {ratio:.3f}x")

line(f"sequential write {mib} MiB", "MB/s", mbps(host["write"]), mbps(guest["write"]), True)
line(f"sequential read {mib} MiB, warm", "MB/s", mbps(host["read"]), mbps(guest["read"]), True)
line(f"sequential read {mib} MiB, cold", "MB/s", mbps(host["cold"]), mbps(guest["cold"]), True)
line(f"cache=never: write {mib} MiB", "MB/s", mbps(host["write"]), mbps(guest["direct_write"]), True)
line(f"cache=never: read {mib} MiB, warm", "MB/s", mbps(host["read"]), mbps(guest["direct"]), True)
line(f"cache=never: read {mib} MiB, cold", "MB/s", mbps(host["cold"]), mbps(guest["direct_cold"]), True)
line(f"{files} create+stat+unlink", "ops/s", files / host["meta"], files / guest["meta"], True)
line(f"sha256sum {sha_mib} MiB", "s", host["sha"], guest["sha"], False)
print("  (ratio: share / host, higher is better; target >= 0.5x for large sequential I/O)")
print(f"  bound, the same in the guest's own RAM (no share): {mib} MiB read {mbps(guest['ram']):.1f} MB/s, "
      f"{files} create+stat+unlink {files / guest['ram_meta']:.1f} ops/s, sha256sum {guest['ram_sha']:.1f} s;")
print(f"         CPU seconds of hostvisor's busiest threads during the warm share read "
      f"({guest['read']:.2f} s): {', '.join(f'{b:.2f}' for b in busy[:5])} (the first is the vCPU)")
PY
