"""Internal network end to end (run by net.bench.sh): two default guests on
one segment, TCP throughput from one to the other (busybox wget of a
BENCH_NET_MIB MiB file from the other's httpd, to /dev/null), best of
BENCH_REPEAT in one boot per pair:
  hostvisor  two `hostvisor run --accel emu --net internal,name=N` VMs
             through the switch process (virtio-net headers and TSO between
             them)
  QEMU       two `qemu-system-x86_64 -accel tcg` VMs joined directly by
             `-netdev stream` (one server=on, one server=off) on a unix socket
Same kernel, initramfs and command line, 1 CPU and 512 MiB each, static
addresses 10.78.0.1 and 10.78.0.2. Usage: net_switch_end_to_end.py HOSTVISOR"""
import os, shutil, sys, tempfile, time

from guest_console import Console

hostvisor = sys.argv[1]
cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"), "hostvisor")
kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
CMDLINE = "console=ttyS0 panic=-1"
MIB = int(os.environ.get("BENCH_NET_MIB", "32"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
BOOT_TIMEOUT, TRANSFER_TIMEOUT = 300, 180


def measure(name, argv_a, argv_b):
    a = Console(name + " A", argv_a)
    time.sleep(1)  # A creates the segment (the switch, or QEMU's listening socket)
    b = Console(name + " B", argv_b)
    try:
        for console, address in ((a, "10.78.0.1"), (b, "10.78.0.2")):
            console.wait_for(b"hostvisor default guest:", BOOT_TIMEOUT)
            console.wait_for(b"/ # ", BOOT_TIMEOUT)
            console.run(f"ip addr add {address}/24 dev eth0 && ip link set eth0 up")
        b.run(f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs=64k count={MIB * 16} 2>/dev/null && "
              "httpd -p 8080 -h /tmp/www", 120)
        a.run("for i in $(seq 100); do ping -c 1 -W 1 10.78.0.2 >/dev/null && break; done", 120)
        best = None
        for _ in range(REPEAT):
            start = time.monotonic()
            out = a.run("wget -q -O /dev/null http://10.78.0.2:8080/blob && echo wget-""ok", TRANSFER_TIMEOUT)
            seconds = time.monotonic() - start
            if b"wget-ok" not in out:
                raise RuntimeError(f"{name}: the transfer failed: {out[-300:]!r}")
            rate = (MIB << 20) / seconds / 1e6
            best = rate if best is None else max(best, rate)
        return best
    finally:
        a.close()
        b.close()


scratch = tempfile.mkdtemp(prefix="hv-bench-switch-")
sock = os.path.join(scratch, "qemu.sock")
net = f"bench-{os.getpid()}"
hv = lambda mac: [hostvisor, "run", "--accel", "emu", "--cpus", "1", "--memory", "512M", "--no-reboot", "--kernel",
                  kernel, "--initrd", initrd, "--append", CMDLINE, "--net", f"internal,name={net},mac={mac}"]
qemu = lambda server, mac: ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic",
                            "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE, "-netdev",
                            f"stream,id=n,server={server},addr.type=unix,addr.path={sock}", "-device",
                            f"virtio-net-pci,netdev=n,mac={mac}"]
results = {}
failed = False
for name, pair in (("hostvisor", (hv("02:78:00:00:00:01"), hv("02:78:00:00:00:02"))),
                   ("QEMU", (qemu("on", "02:78:00:00:00:01"), qemu("off", "02:78:00:00:00:02")))):
    try:
        results[name] = measure(name, *pair)
    except (RuntimeError, OSError) as e:
        print(f"!! {e}", flush=True)
        failed = True
runtime = os.environ.get("XDG_RUNTIME_DIR")
switch_dir = os.path.join(runtime, "hostvisor", "net") if runtime else f"/tmp/hostvisor-{os.geteuid()}/net"
for leftover in (os.path.join(switch_dir, f"{net}.lock"), os.path.join(switch_dir, f"{net}.log"), sock):
    if os.path.exists(leftover):
        os.unlink(leftover)
shutil.rmtree(scratch, ignore_errors=True)
print(f"{'TCP VM to VM on one segment, MB/s':48} {'hostvisor':>10} {'QEMU':>10} {'ratio':>8}")
hv_rate, qemu_rate = results.get("hostvisor"), results.get("QEMU")
cell = lambda v: f"{v:10.1f}" if v is not None else f"{'failed':>10}"
ratio = f"{hv_rate / qemu_rate:8.2f}" if hv_rate and qemu_rate else f"{'-':>8}"
print(f"{'wget of ' + str(MIB) + ' MiB from the other VM':48} {cell(hv_rate)} {cell(qemu_rate)} {ratio}")
sys.exit(1 if failed else 0)
