#!/usr/bin/env bash
# Host-guest integration over vsock (issue 14), on the default guest on
# hostvisor's software CPU. Each part is a function of its own.
#
# vsock throughput: BENCH_VSOCK_MIB (default 64) MiB over one stream, host ->
# guest and guest -> host, MB/s, best of BENCH_REPEAT (default 3) in one
# boot. The guest side is tests/linux/guest_vsock_echo (static, handed to the
# guest on a raw disk): `sink` reads a stream to its end and answers the byte
# count, `source` sends the bytes asked for. The host side speaks hostvisor's
# unix-socket protocol (CONNECT <port> / OK <hostport>). Times are wall
# seconds on the host: from the first byte sent to the guest's count
# (host -> guest), from the request to the last byte (guest -> host).
# The peer would be QEMU with vhost-vsock-pci, which needs /dev/vhost-vsock
# (the vhost_vsock module, and root); without it the script says so and
# prints hostvisor's figures alone.
# Usage: bench/agent.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
echo_program="$build/tests/linux/guest_vsock_echo"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
[ -x "$echo_program" ] || { echo "no guest_vsock_echo in $build (build the 'guest_vsock_echo' target)"; exit 1; }

vsock_throughput() {
echo "vsock throughput, default guest on emu, one stream of ${BENCH_VSOCK_MIB:-64} MiB each way (best of ${BENCH_REPEAT:-3})"
if [ -c /dev/vhost-vsock ] && [ -w /dev/vhost-vsock ]; then
  echo "  peer: /dev/vhost-vsock is here, but QEMU vhost-vsock-pci is not measured by this script yet"
else
  echo "  peer: QEMU's vhost-vsock-pci needs /dev/vhost-vsock, which this host lacks; hostvisor's figures alone"
fi
PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" python3 - "$hostvisor" "$echo_program" <<'PY'
import os, socket, sys, tempfile, time

from guest_console import Console

hostvisor, echo_program = sys.argv[1], sys.argv[2]
MIB = int(os.environ.get("BENCH_VSOCK_MIB", "64"))
SIZE = MIB << 20
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
SINK, SOURCE = 7001, 7002


def connect(uds, port):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(300)
    conn.connect(uds)
    conn.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            raise RuntimeError(f"guest port {port}: closed before OK")
        line += byte
    if not line.startswith(b"OK "):
        raise RuntimeError(f"guest port {port}: {line!r}")
    return conn


def host_to_guest(uds):
    block = bytes(1 << 20)
    with connect(uds, SINK) as conn:
        start = time.monotonic()
        for _ in range(MIB):
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            data = conn.recv(64)
            if not data:
                break
            reply += data
        seconds = time.monotonic() - start
    if reply.strip() != str(SIZE).encode():
        raise RuntimeError(f"the guest counted {reply!r}, not {SIZE}")
    return seconds


def guest_to_host(uds):
    with connect(uds, SOURCE) as conn:
        start = time.monotonic()
        conn.sendall(f"{SIZE}\n".encode())
        got = 0
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            got += len(data)
        seconds = time.monotonic() - start
    if got != SIZE:
        raise RuntimeError(f"the host got {got} bytes, not {SIZE}")
    return seconds


with tempfile.TemporaryDirectory(prefix="hv-vsock-bench-") as scratch:
    program = open(echo_program, "rb").read()
    disk = os.path.join(scratch, "echo.img")
    with open(disk, "wb") as f:
        f.write(program + bytes(-len(program) % 512))
    uds = os.path.join(scratch, "vsock.sock")
    console = Console("hostvisor", [hostvisor, "run", "--accel", "emu", "--memory", "512M", "--net", "none",
                                    "--disk", disk + ",format=raw,readonly=on", "--vsock", f"cid=3,uds={uds}"])
    try:
        console.wait_for(b"Type 'poweroff' to stop.", 300)
        console.run(f"head -c {len(program)} /dev/vda > /tmp/vecho && chmod +x /tmp/vecho && "
                    f"/tmp/vecho sink {SINK} </dev/null >/dev/null 2>&1 && "
                    f"/tmp/vecho source {SOURCE} </dev/null >/dev/null 2>&1")
        for name, run in (("host -> guest", host_to_guest), ("guest -> host", guest_to_host)):
            best = min(run(uds) for _ in range(REPEAT))
            print(f"  hostvisor  {name}: {SIZE / 1e6 / best:8.1f} MB/s  ({MIB} MiB in {best:.2f} s)")
    finally:
        console.close()
PY
}

vsock_throughput
