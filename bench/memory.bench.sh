#!/usr/bin/env bash
# Guest memory: how the --memory backing options change boot time and guest
# memory bandwidth, and the VMM's own memory beside the guest's.
#
#   backing  the default guest (Debian kernel + busybox initramfs, 256 MiB,
#            one CPU, no NIC) on hostvisor's software CPU and on QEMU TCG,
#            with default, thp and hugepages=on backing: wall time to the
#            shell prompt; MB/s of two in-guest loops, "fill" (dd from
#            /dev/zero into a fresh 128 MiB tmpfs file: the guest's first
#            touch of its pages) and "copy" (dd of that file to /dev/null
#            four times: memory-to-memory copies), timed on the host around
#            the command. QEMU madvises all RAM MADV_HUGEPAGE by itself, so
#            its default and thp rows are the same configuration;
#            hugepages=on is memory-backend-memfd,hugetlb=on. hugepages=on
#            needs a 2 MiB pool: the script grows /proc/sys/vm/nr_hugepages
#            for the run (root) and puts it back.
#   overhead the VMM's resident memory beyond guest RAM (RSS minus the RSS of
#            the RAM mapping), and the part of it no other process shares
#            (private pages): the default guest at its prompt (emu, QEMU
#            TCG), and a tiny guest (tests/guests memtouch, 32 MiB) on the
#            software CPU and, when /dev/kvm is there, on KVM beside QEMU on
#            KVM. Goal: <= 5 MiB (Firecracker's figure). The tiny-guest rows
#            are the median of 5 runs (BENCH_OVERHEAD_RUNS): file-backed
#            pages come in fault-around windows, so a run varies by ~0.2 MiB.
#   reporting free page reporting: seconds from the guest freeing 600 MiB
#            (rm of a tmpfs file) until the host holds 500 MiB less (its
#            anonymous + shared RSS), 1 GiB guests, hostvisor --balloon beside
#            QEMU -device virtio-balloon,free-page-reporting=on.
#
# Each measurement is one function; main() lists them (BENCH_ONLY=NAME,...
# runs only those). Best of BENCH_REPEAT (default 1) runs per row, hostvisor
# and QEMU alternating.
# Usage: bench/memory.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed (scripts/setup-host.sh)"; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

exec python3 - "$hostvisor" "$build" "$here" <<'PY'
import os, subprocess, sys, time

hostvisor, build, here = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, here)
from guest_console import Console

cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"), "hostvisor")
kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
CMDLINE = "console=ttyS0 panic=-1"
RAM_MIB = 256
PROMPT = b"/ # "
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
POOL = "/proc/sys/vm/nr_hugepages"
GOAL_OVERHEAD_MIB = 5.0


def hostvisor_argv(memory, kernel_path=kernel, accel="emu", extra=()):
    argv = [hostvisor, "run", "--accel", accel, "--cpus", "1", "--memory", memory, "--net", "none",
            "--no-reboot", "--kernel", kernel_path]
    if kernel_path == kernel:
        argv += ["--initrd", initrd, "--append", CMDLINE]
    return argv + list(extra)


def qemu_argv(backend, kernel_path=kernel, ram_mib=RAM_MIB, accel="tcg"):
    argv = ["qemu-system-x86_64", "-accel", accel, "-smp", "1", "-m", f"{ram_mib}M", "-nographic", "-no-reboot",
            "-nic", "none", "-kernel", kernel_path]
    if backend:
        argv += ["-object", f"{backend},id=ram,size={ram_mib}M", "-machine", "memory-backend=ram"]
    if kernel_path == kernel:
        argv += ["-initrd", initrd, "-append", CMDLINE]
    return argv


def boot(name, argv):
    """A console at the default guest's shell prompt, and the seconds it took."""
    start = time.monotonic()
    console = Console(name, argv)
    try:
        console.wait_for(PROMPT, 300)
    except Exception:
        console.close()
        raise
    return console, time.monotonic() - start


def timed(console, command, timeout=300):
    start = time.monotonic()
    console.run(command, timeout)
    return time.monotonic() - start


def bandwidth(console):
    """MB/s of the fill and copy loops (host wall time around each)."""
    fill_mib, copies = 128, 4
    fill = timed(console, f"dd if=/dev/zero of=/tmp/bw bs=1M count={fill_mib} 2>/dev/null")
    copy = timed(console, f"for i in $(seq {copies}); do dd if=/tmp/bw of=/dev/null bs=1M 2>/dev/null; done")
    console.run("rm /tmp/bw")
    return fill_mib * 1.048576 / fill, copies * fill_mib * 1.048576 / copy


def smaps(pid):
    """(mapping header, {field: kB}) for each mapping of pid."""
    rows = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                rows.append((line.strip(), {}))
            elif len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                rows[-1][1][parts[0][:-1]] = int(parts[1])
    return rows


def overhead_kib(pid, ram_mib):
    """(RSS beyond guest RAM, private pages beyond guest RAM), KiB. Guest
    RAM is the mapping(s) of exactly ram_mib (hugetlbfs RAM is not in Rss)."""
    rss = private = 0
    for header, fields in smaps(pid):
        if fields.get("Size") == ram_mib * 1024:
            continue
        rss += fields.get("Rss", 0)
        private += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return rss, private


class HugePagePool:
    """Grows the host's 2 MiB pool for the run and puts it back."""

    def __init__(self, pages):
        self.saved = None
        try:
            with open(POOL) as f:
                self.saved = int(f.read())
            with open(POOL, "w") as f:
                f.write(str(self.saved + pages))
            with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
                self.ok = int(f.read()) >= pages
        except OSError:
            self.ok = False

    def close(self):
        if self.saved is not None:
            with open(POOL, "w") as f:
                f.write(str(self.saved))


def backing_rows():
    """Boot time and bandwidth per backing, hostvisor beside QEMU."""
    pool = HugePagePool(RAM_MIB // 2 + 8)
    configs = [("default", f"{RAM_MIB}M", None),
               ("thp", f"{RAM_MIB}M,hugepages=thp", None),
               ("hugepages=on", f"{RAM_MIB}M,hugepages=on",
                "memory-backend-memfd,hugetlb=on,hugetlbsize=2M")]
    print(f"{'backing':<14}{'':<12}{'boot s':>8}{'fill MB/s':>11}{'copy MB/s':>11}")
    try:
        for label, hv_memory, qemu_backend in configs:
            if label == "hugepages=on" and not pool.ok:
                print(f"{label:<14}skipped: the host's huge page pool could not grow by {RAM_MIB // 2 + 8} pages")
                continue
            best = {}
            for _ in range(REPEAT):
                for who, argv in (("hostvisor", hostvisor_argv(hv_memory)), ("qemu", qemu_argv(qemu_backend))):
                    console, boot_s = boot(who, argv)
                    try:
                        fill, copy = bandwidth(console)
                    finally:
                        console.close()
                    old = best.get(who)
                    best[who] = (min(boot_s, old[0]) if old else boot_s, max(fill, old[1]) if old else fill,
                                 max(copy, old[2]) if old else copy)
            for who in ("hostvisor", "qemu"):
                b, f, c = best[who]
                print(f"{label if who == 'hostvisor' else '':<14}{who:<12}{b:8.2f}{f:11.0f}{c:11.0f}")
            h, q = best["hostvisor"], best["qemu"]
            print(f"{'':<14}{'hv/qemu':<12}{h[0] / q[0]:8.2f}{h[1] / q[1]:11.2f}{h[2] / q[2]:11.2f}")
    finally:
        pool.close()


def overhead_once(label, argv, ram_mib, ready):
    """Starts argv, waits for `ready` on its console; its overhead (KiB)."""
    console = Console(label, argv)
    try:
        console.wait_for(ready, 300)
        time.sleep(1)
        return overhead_kib(console.child.pid, ram_mib)
    finally:
        if ready != PROMPT:
            console.child.kill()  # a test kernel has no poweroff
        console.close()


def overhead_row(label, argv, ram_mib, ready, runs=1):
    """Prints the overhead of argv (the median run by RSS of `runs`)."""
    results = sorted(overhead_once(label, argv, ram_mib, ready) for _ in range(runs))
    rss, private = results[len(results) // 2]
    goal = "within" if rss / 1024 <= GOAL_OVERHEAD_MIB else "over"
    print(f"{label:<44}{rss / 1024:9.1f}{private / 1024:12.1f}   ({goal} the {GOAL_OVERHEAD_MIB:.0f} MiB goal)")


def overhead_rows():
    """The VMM's resident memory beyond guest RAM."""
    print(f"{'VMM memory beyond guest RAM':<44}{'RSS MiB':>9}{'private MiB':>12}")
    overhead_row("default guest, hostvisor emu", hostvisor_argv(f"{RAM_MIB}M"), RAM_MIB, PROMPT)
    overhead_row("default guest, qemu tcg", qemu_argv(None), RAM_MIB, PROMPT)
    tiny = os.path.join(build, "tests/guests/memtouch.pvh")
    if not os.path.exists(tiny):
        print("tiny guest: no tests/guests/memtouch.pvh in the build (build hv_guest_kernels)")
        return
    runs = int(os.environ.get("BENCH_OVERHEAD_RUNS", "5"))
    overhead_row("tiny guest (32 MiB), hostvisor emu", hostvisor_argv("32M", tiny), 32, b"memtouch: touched", runs)
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        overhead_row("tiny guest (32 MiB), hostvisor kvm", hostvisor_argv("32M", tiny, "kvm"), 32,
                     b"memtouch: touched", runs)
        # -no-shutdown: QEMU takes the test kernel's end (an interrupt with no
        # IDT, a reset) as a shutdown and would exit before it is measured.
        overhead_row("tiny guest (32 MiB), qemu kvm", qemu_argv(None, tiny, 32, "kvm") + ["-no-shutdown"], 32,
                     b"memtouch: touched", runs)
    else:
        print("tiny guest on kvm: no /dev/kvm")


def guest_ram_held_kib(pid):
    """What the host holds of a VMM's memory that guest RAM lives in:
    anonymous plus shared-memory RSS (private RAM, or a memfd's pages)."""
    held = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssShmem:")):
                held += int(line.split()[1])
    return held


def reporting_run(console, pid, fill_mib=600, goal_mib=500, timeout=30):
    """Fills fill_mib of a tmpfs in the guest, removes it, and returns the
    seconds until the host holds goal_mib less (None if not within timeout)."""
    if "yes" not in console.run("test -d /sys/bus/virtio/drivers/virtio_balloon && echo yes || echo no").decode():
        raise RuntimeError("the guest has no virtio_balloon driver (a default guest built before manifest 6?)")
    console.run(f"mount -t tmpfs -o size={fill_mib + 100}m tmpfs /mnt && "
                f"dd if=/dev/zero of=/mnt/fill bs=1M count={fill_mib} 2>/dev/null")
    filled = guest_ram_held_kib(pid)
    console.run("rm /mnt/fill")
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if filled - guest_ram_held_kib(pid) >= goal_mib * 1024:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def reporting_rows():
    """Free page reporting: after the guest frees 600 MiB, how long until the
    host has 500 MiB back (1 GiB guests; hostvisor's balloon with reporting
    on, QEMU's virtio-balloon with free-page-reporting=on). The clock starts
    when the guest's rm returns; Linux reports free 2 MiB blocks in batches
    every 2 s, so both are paced by the guest."""
    print(f"{'free page reporting (1 GiB guest)':<44}{'s to 500 MiB back':>18}")
    runs = (("hostvisor emu", hostvisor_argv("1G", extra=("--balloon",))),
            ("qemu tcg", qemu_argv(None, ram_mib=1024) + ["-device", "virtio-balloon,free-page-reporting=on"]))
    best = {}
    for _ in range(REPEAT):
        for label, argv in runs:
            console, _ = boot(label, argv)
            try:
                took = reporting_run(console, console.child.pid)
            finally:
                console.close()
            if took is not None:
                best[label] = min(took, best.get(label, took))
    for label, _ in runs:
        print(f"{label:<44}{best[label]:18.1f}" if label in best else f"{label:<44}{'not within 30 s':>18}")
    if len(best) == 2:
        print(f"{'hostvisor/qemu':<44}{best['hostvisor emu'] / best['qemu tcg']:18.2f}")


def main():
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    print(f"peer: {version.splitlines()[0] if version else 'qemu-system-x86_64'}")
    only = os.environ.get("BENCH_ONLY")  # e.g. BENCH_ONLY=overhead_rows: one section
    for section in (backing_rows, overhead_rows, reporting_rows):
        if not only or section.__name__ in only.split(","):
            section()


main()
PY
