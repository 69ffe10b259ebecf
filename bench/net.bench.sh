#!/usr/bin/env bash
# User-mode NAT and tap, each in two parts (and the same two for internal
# networks, in bench_net_switch and net_switch_end_to_end.py).
#
# 1. VMM side alone: a host-side driver (the test guest of src/net/testing)
#    hands frames to SlirpBackend, which runs on the device event loop as in
#    a VM; packets per second and the process's CPU time per packet (driver,
#    loop and libslirp together), best of BENCH_REPEAT runs. And for the tap
#    (bench_net makes a network namespace for it, so it needs root or user
#    namespaces): one TCP stream of 64 KiB TSO frames from a driver's
#    transmit virtqueue through virtio-net into a tap, read from a socket by
#    the host kernel's TCP; Gbit/s and cores busy.
#
# 2. End to end: the default guest (Debian's cloud kernel + hostvisor's
#    busybox initramfs, whose init brings the NIC up with DHCP) on
#    hostvisor's software CPU with --net user, and on QEMU TCG with
#    -netdev user and virtio-net-pci: the same kernel, initramfs and command
#    line, one CPU, 512 MiB. TCP throughput of BENCH_NET_MIB (default 32) MiB
#    each way, best of BENCH_REPEAT per direction in one boot each, with the
#    guest's busybox tools (the same on both, so the ratio compares the
#    machines, not the tools):
#      guest->host  outbound   guest `wget --post-file` to a server on the host's 127.0.0.1 at 10.0.2.2
#      host->guest  outbound   guest `wget -O /dev/null` from that server
#      host->guest  hostfwd    host connects to the forward and sends, guest `nc -l | wc -c`
#      guest->host  hostfwd    host fetches from the guest's `httpd` through the forward
#    Times are wall seconds: on the host from the first to the last byte where
#    the host receives; from the command to its end mark on the guest's
#    console where the guest does. Everything stays on 127.0.0.1.
#
# 3. End to end through a tap: the same guest on hostvisor with --net tap
#    and on QEMU TCG with -netdev tap (vhost off) and virtio-net-pci, on one
#    persistent tap (hvtap0, 192.168.79.1/24 on the host side) in a network
#    namespace the script makes with `unshare --net`, so it needs root. The
#    guest takes 192.168.79.2; the two outbound transfers as above, to a
#    server on the tap's host address.
# Usage: bench/net.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
echo "user-mode NAT (libslirp $(pkg-config --modversion slirp 2>/dev/null || echo '?')) and tap, VMM side without a guest; no peer"
"$build/bench/bench_net" --repeat "${BENCH_REPEAT:-3}"
# Internal networks (--net internal): the switch's VMM side without guests,
# then two VMs through the switch beside two QEMU guests on -netdev stream.
echo "internal network (the switch process), VMM side without a guest; no peer (issue 11's target: 5 Gbit/s on one core)"
"$build/bench/bench_net_switch" --repeat "${BENCH_REPEAT:-3}"
python3 "$(dirname "$0")/net_switch_end_to_end.py" "$build/src/cli/hostvisor" || echo "!! internal network end to end failed"

hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed (scripts/setup-host.sh)"; exit 1; }

# end_to_end MODE [PREFIX...]: part 2 (nat) or 3 (tap), run under PREFIX.
end_to_end() {
local mode=$1
shift
"$@" env PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" python3 - "$hostvisor" "$mode" <<'PY'
import os, socket, subprocess, sys, threading, time
import http.server

from guest_console import Console

hostvisor, MODE = sys.argv[1], sys.argv[2]
# Where the guest finds the host's server: the NAT's gateway, or the tap's host side.
HOST = "10.0.2.2" if MODE == "nat" else "192.168.79.1"
cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"), "hostvisor")
kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
CMDLINE = "console=ttyS0 panic=-1"
MIB = int(os.environ.get("BENCH_NET_MIB", "32"))
SIZE = MIB << 20
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
BOOT_TIMEOUT, TRANSFER_TIMEOUT = 300, 120
GUEST_LISTEN_IN, GUEST_LISTEN_OUT = 5002, 5003


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guest_to_host_outbound(console, http_port):
    start = time.monotonic()
    output = console.run(f"wget -q -O /dev/null --post-file /tmp/www/blob http://{HOST}:{http_port}/ && "
                         "echo wget-""ok", TRANSFER_TIMEOUT)
    seconds = time.monotonic() - start
    if b"wget-ok" not in output:
        raise RuntimeError(f"{console.name}: wget --post-file to the host failed: {output[-500:]!r}")
    return seconds


def host_to_guest_outbound(console, http_port):
    start = time.monotonic()
    output = console.run(f"wget -q -O /dev/null http://{HOST}:{http_port}/blob && echo wget-""ok", TRANSFER_TIMEOUT)
    seconds = time.monotonic() - start
    if b"wget-ok" not in output:
        raise RuntimeError(f"{console.name}: wget from the host failed: {output[-500:]!r}")
    return seconds


def listen_in_background(console, command, port):
    """Starts `command` (which listens on `port`) in the guest's background
    and returns once the port listens: a connection to a forward before that
    would be accepted by the NAT and then refused by the guest."""
    console.run(f"({command}) & for i in $(seq 100); do netstat -ltn | grep -q ':{port} ' && break; sleep 0.1; done")


def host_to_guest_forward(console, forward_in):
    # nc's stdin is /dev/null: a background job that reads the terminal is
    # stopped (SIGTTIN) as soon as the next command is typed, and the
    # transfer then never ends.
    listen_in_background(console, f"rm -f /tmp/received; nc -l -p {GUEST_LISTEN_IN} </dev/null | wc -c > /tmp/received.part "
                         "&& mv /tmp/received.part /tmp/received", GUEST_LISTEN_IN)
    block = bytes(1 << 20)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", forward_in), timeout=TRANSFER_TIMEOUT) as conn:
        for _ in range(SIZE >> 20):
            conn.sendall(block)
    # Received once the guest's nc has seen the end of the stream and wc
    # has counted it.
    received = console.run("while [ ! -e /tmp/received ]; do sleep 0.05; done; cat /tmp/received", TRANSFER_TIMEOUT)
    seconds = time.monotonic() - start
    if str(SIZE).encode() not in received:
        raise RuntimeError(f"{console.name}: the guest received {received!r} bytes, not {SIZE}")
    return seconds


def guest_to_host_forward(console, forward_out):
    got, first = 0, None
    with socket.create_connection(("127.0.0.1", forward_out), timeout=TRANSFER_TIMEOUT) as conn:
        conn.sendall(b"GET /blob HTTP/1.0\r\n\r\n")
        header = b""
        while b"\r\n\r\n" not in header:
            data = conn.recv(65536)
            if not data:
                break
            header += data
        first = time.monotonic()
        got = len(header.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n" in header else 0
        while got < SIZE:
            data = conn.recv(1 << 20)
            if not data:
                break
            got += len(data)
        seconds = time.monotonic() - first
    if got != SIZE:
        raise RuntimeError(f"{console.name}: the host read {got} of {SIZE} bytes from the guest's httpd")
    return seconds


class Blob(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        block = bytes(1 << 20)
        for _ in range(SIZE >> 20):
            self.wfile.write(block)

    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            data = self.rfile.read(min(left, 1 << 20))
            if not data:
                break
            left -= len(data)
        self.send_response(200 if left == 0 else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def measure(name, argv_for, http_port):
    forward_in, forward_out = free_port(), free_port()
    console = Console(name, argv_for(forward_in, forward_out))
    try:
        console.wait_for(b"hostvisor default guest:", BOOT_TIMEOUT)
        console.wait_for(b"/ # ", BOOT_TIMEOUT)
        if MODE == "nat":
            console.run("for i in $(seq 300); do ip route | grep -q ^default && break; sleep 0.2; done; "
                        "ip route | grep -q ^default", 90)
        else:
            # Nothing serves DHCP on the tap: stop the client once it has
            # flushed the address at start, and set one.
            console.run("for i in $(seq 150); do grep -q discover /var/log/udhcpc.eth0.log && break; sleep 0.2; "
                        "done; killall udhcpc; ip link set eth0 up && ip addr add 192.168.79.2/24 dev eth0 && "
                        "for i in $(seq 50); do ping -c 1 -W 1 192.168.79.1 >/dev/null && break; done", 90)
        console.run(f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs=64k count={SIZE >> 16} 2>/dev/null && "
                    f"httpd -p {GUEST_LISTEN_OUT} -h /tmp/www", 120)
        # The hostfwd host->guest transfer goes last: a transfer that stalls
        # leaves the guest's shell busy, so it ends the measurements of its
        # boot, and the others are kept.
        directions = (("guest->host outbound (wget --post-file)", lambda: guest_to_host_outbound(console, http_port)),
                      ("host->guest outbound (wget -O /dev/null)", lambda: host_to_guest_outbound(console, http_port)),
                      ("guest->host hostfwd (host GETs guest httpd)", lambda: guest_to_host_forward(console, forward_out)),
                      ("host->guest hostfwd (host sends, guest nc -l)",
                       lambda: host_to_guest_forward(console, forward_in)))
        if MODE == "tap":
            directions = directions[:2]  # the host reaches the guest's address directly: no forwards
        results = {}
        try:
            for _ in range(REPEAT):
                for key, f in directions:
                    results.setdefault(key, []).append(SIZE / f() / 1e6)
        except (RuntimeError, OSError) as e:
            print(f"!! {name}: {e}", flush=True)
            global failed
            failed = True
        return {k: max(v) for k, v in results.items() if v}
    finally:
        console.close()


if not all(os.path.exists(p) for p in (kernel, initrd, os.path.join(cache, "default-guest.manifest"))):
    # First use on this machine: hostvisor builds the default guest as it
    # boots it, so the timed runs below use the same cache.
    print(f"building the default guest in {cache} (once) ...", flush=True)
    warm_up = Console("hostvisor (warm-up)", [hostvisor, "run", "--accel", "emu", "--net", "none"])
    try:
        warm_up.wait_for(b"/ # ", BOOT_TIMEOUT)
    finally:
        warm_up.close()


def forwards(forward_in, forward_out):
    return (f"hostfwd=tcp:127.0.0.1:{forward_in}-:{GUEST_LISTEN_IN},"
            f"hostfwd=tcp:127.0.0.1:{forward_out}-:{GUEST_LISTEN_OUT}")


failed = False
HV, QEMU = "hostvisor --accel emu", "qemu-system-x86_64 -accel tcg"
if MODE == "tap":
    for command in ("ip link set lo up", "ip tuntap add hvtap0 mode tap vnet_hdr",
                    "ip addr add 192.168.79.1/24 dev hvtap0", "ip link set hvtap0 up"):
        subprocess.run(command.split(), check=True)
nat_runs = {
    HV: lambda i, o: [hostvisor, "run", "--accel", "emu", "--cpus", "1", "--memory", "512M", "--no-reboot",
                      "--kernel", kernel, "--initrd", initrd, "--append", CMDLINE, "--net", "user," + forwards(i, o)],
    QEMU: lambda i, o: ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic",
                        "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE,
                        "-netdev", "user,id=n0," + forwards(i, o), "-device", "virtio-net-pci,netdev=n0"],
}
tap_runs = {
    HV: lambda i, o: [hostvisor, "run", "--accel", "emu", "--cpus", "1", "--memory", "512M", "--no-reboot",
                      "--kernel", kernel, "--initrd", initrd, "--append", CMDLINE, "--net", "tap,ifname=hvtap0"],
    QEMU: lambda i, o: ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic",
                        "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE, "-netdev",
                        "tap,id=n0,ifname=hvtap0,script=no,downscript=no,vhost=off",
                        "-device", "virtio-net-pci,netdev=n0"],
}
runs = nat_runs if MODE == "nat" else tap_runs
version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]

server = http.server.ThreadingHTTPServer(("127.0.0.1" if MODE == "nat" else HOST, 0), Blob)
threading.Thread(target=server.serve_forever, daemon=True).start()
peer_net = "-netdev user" if MODE == "nat" else "-netdev tap (vhost off)"
print(f"end to end through {'the user-mode NAT' if MODE == 'nat' else 'a tap'}: {MIB} MiB per transfer, default "
      f"guest on 1 CPU, 512 MiB, best of {REPEAT} in one boot each; peer: {version}, -accel tcg, {peer_net} + "
      "virtio-net-pci")
print(f"host: {os.cpu_count()} cores, shared with other work (load average "
      f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}): wall times vary with the load", flush=True)
best = {}
for name, argv_for in runs.items():
    try:
        best[name] = measure(name, argv_for, server.server_address[1])
    except (RuntimeError, OSError, subprocess.TimeoutExpired, IndexError) as e:
        print(f"!! {name}: {e}", flush=True)
        failed = True
server.shutdown()

keys = ["guest->host outbound (wget --post-file)", "host->guest outbound (wget -O /dev/null)",
        "guest->host hostfwd (host GETs guest httpd)", "host->guest hostfwd (host sends, guest nc -l)"]
if MODE == "tap":
    keys = keys[:2]
title = "TCP through user-mode NAT, MB/s" if MODE == "nat" else "TCP through a tap, MB/s"
print(f"{title:48} {'hostvisor':>10} {'QEMU':>10} {'ratio':>8}")
for key in keys:
    hv, qemu = best.get(HV, {}).get(key), best.get(QEMU, {}).get(key)
    cell = lambda v: f"{v:10.1f}" if v is not None else f"{'failed':>10}"
    ratio = f"{hv / qemu:8.2f}" if hv and qemu else f"{'-':>8}"
    print(f"{key:48} {cell(hv)} {cell(qemu)} {ratio}")
if MODE == "nat":
    print("ratio = hostvisor / QEMU; issue 10's target: NAT at least matches QEMU's slirp (ratio >= 1)")
else:
    print("ratio = hostvisor / QEMU; both guests run on a software CPU, which bounds these figures: the VMM side's "
          "own rate is bench_net's tap line above")
sys.exit(1 if failed else 0)
PY
}

status=0
end_to_end nat || status=1
end_to_end tap unshare --net || status=1
exit $status
