#!/usr/bin/env bash
# Guest MIPS of whole guests: the benchmark kernel (bench/kernels/mips.c, a
# freestanding PVH kernel) runs one compute-bound loop per workload on
# hostvisor's software CPU (`hostvisor run --accel emu --debug-exit`) and on
# QEMU TCG (`qemu-system-x86_64 -accel tcg` with isa-debug-exit), same kernel,
# same command line, 1 vCPU and 128 MiB each, in the same run.
#
# MIPS = instructions the loop retired (iterations x the loop's count, known
# from its assembly) / (time of the run - time of a run of the same kernel
# with zero iterations), so start-up and shut-down are subtracted. Each
# emulator gets its own iteration count, sized from a calibration run so that
# the loop takes about BENCH_SECONDS (default 1.5) of CPU time; the runs then
# alternate between the two, best of BENCH_REPEAT (default 3).
# Printed per workload: MIPS on wall time (both) and the ratio; MIPS on the
# process's CPU time (user + system, both) and the ratio; hostvisor's vCPU
# thread MIPS from HOSTVISOR_EMU_STATS. Checked: the emulator's retired
# instruction count grows by exactly the loop's count, and both emulators
# compute the same checksum for the same iterations.
#   bench/guest_mips.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
kernel="$build/bench/kernels/mips.pvh"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
[ -f "$kernel" ] || { echo "no $kernel (build the 'hv_bench_mips_kernel' target)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed (scripts/setup-host.sh)"; exit 1; }

exec python3 - "$hostvisor" "$kernel" <<'PY'
import os, re, subprocess, sys, tempfile, time

hostvisor, kernel = sys.argv[1], sys.argv[2]
target_seconds = float(os.environ.get("BENCH_SECONDS", "1.5"))
repeat = int(os.environ.get("BENCH_REPEAT", "3"))
WORKLOADS = ["alu", "chase", "call", "crc", "tlb"]
DESCRIPTION = {"alu": "integer ALU", "chase": "pointer chasing, 1 MiB", "call": "call/ret, 2 deep",
               "crc": "bitwise CRC-32, data-dependent branches", "tlb": "4 KiB pages, 32 MiB (8192 pages)"}
TIMEOUT = 120
PASS_STATUS = 33  # debug-exit value 0x10 -> (0x10 << 1) | 1
RESULT = re.compile(rb"bench (\w+) insns_per_iteration (\d+) iterations 0x([0-9a-f]+) "
                    rb"loop_insns 0x([0-9a-f]+) checksum 0x([0-9a-f]+)")
STATS = re.compile(rb"emu vCPU 0: (\d+) instructions retired in ([0-9.]+) s of thread CPU time")


class RunError(Exception):
    pass


def command(engine, workload, iterations):
    # The same number of digits in every run, so parsing the command line costs the same.
    append = f"bench={workload} iterations={iterations:020d}"
    if engine == "hostvisor":
        return [hostvisor, "--log-level", "info", "run", "--accel", "emu", "--cpus", "1", "--memory", "128M",
                "--debug-exit", "--kernel", kernel, "--append", append]
    return ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "128M", "-nographic", "-no-reboot",
            "-net", "none", "-monitor", "none", "-serial", "stdio", "-display", "none",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel, "-append", append]


def run(engine, workload, iterations):
    """One run: wall seconds, process CPU seconds (user + system), the
    kernel's result line, and for hostvisor the vCPU's retired instructions
    and thread CPU seconds."""
    env = dict(os.environ, HOSTVISOR_EMU_STATS="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        child = subprocess.Popen(command(engine, workload, iterations), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, env=env)
        deadline = start + TIMEOUT
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise RunError(f"{engine} {workload} x{iterations}: no exit within {TIMEOUT} s")
            time.sleep(0.002)
        wall = time.monotonic() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != PASS_STATUS:
        raise RunError(f"{engine} {workload} x{iterations}: exit status {child.returncode}, not {PASS_STATUS}:\n"
                       + (stdout[-800:] + stderr[-800:]).decode(errors="replace"))
    m = RESULT.search(stdout)
    if not m or m.group(1).decode() != workload or int(m.group(3), 16) != iterations:
        raise RunError(f"{engine} {workload} x{iterations}: no result line:\n" + stdout[-800:].decode(errors="replace"))
    r = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "per_iteration": int(m.group(2)),
         "loop_insns": int(m.group(4), 16), "checksum": m.group(5).decode()}
    if engine == "hostvisor":
        s = STATS.search(stderr)
        if not s:
            raise RunError(f"hostvisor {workload}: no HOSTVISOR_EMU_STATS line on stderr:\n"
                           + stderr[-800:].decode(errors="replace"))
        r["retired"], r["vcpu_cpu"] = int(s.group(1)), float(s.group(2))
    return r


def best(runs, key):
    return min(runs, key=lambda r: r[key])


def calibrate(engine, workload, empty):
    """Iterations for about target_seconds of loop CPU time, from growing
    trial runs; also returns the trial at 1,000,000 iterations (both
    engines run it, so their checksums can be compared)."""
    n, first = 1_000_000, None
    while True:
        r = run(engine, workload, n)
        first = first or r
        loop = r["cpu"] - empty["cpu"]
        if loop >= 0.25 or n >= 1 << 40:
            return max(1, int(n * target_seconds / max(loop, 1e-3))), first
        n *= 8


def qemu_version():
    try:
        return subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "qemu-system-x86_64 (version unknown)"


print(f"guest MIPS, whole guest: {kernel} (PVH entry), 1 vCPU, 128 MiB")
print(f"peer: {qemu_version()}, -accel tcg, same kernel and command line, in this run")
print(f"host: {os.cpu_count()} cores, shared with other work (load average "
      f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}): wall-time figures vary with the load; "
      f"CPU-time figures (user + system of the whole process) vary less")
print(f"method: MIPS = loop instructions / (time - time of a zero-iteration run); runs alternate, "
      f"best of {repeat}; ~{target_seconds:g} s of loop CPU time per run, iterations sized per emulator", flush=True)

failed = False
rows = []
for workload in WORKLOADS:
    try:
        empty = {e: best([run(e, workload, 0) for _ in range(repeat)], "cpu") for e in ("hostvisor", "qemu")}
        iterations, trial = {}, {}
        for e in ("hostvisor", "qemu"):
            iterations[e], trial[e] = calibrate(e, workload, empty[e])
        if trial["hostvisor"]["checksum"] != trial["qemu"]["checksum"]:
            print(f"!! {workload}: checksums differ at 1000000 iterations: hostvisor "
                  f"{trial['hostvisor']['checksum']}, QEMU {trial['qemu']['checksum']}", flush=True)
            failed = True
        empties = {"hostvisor": [], "qemu": []}
        loaded = {"hostvisor": [], "qemu": []}
        for _ in range(repeat):
            for e in ("hostvisor", "qemu"):
                empties[e].append(run(e, workload, 0))
                loaded[e].append(run(e, workload, iterations[e]))
        fig = {}
        for e in ("hostvisor", "qemu"):
            runs, zero = loaded[e], empties[e] + [empty[e]]
            insns = runs[0]["loop_insns"]
            wall = best(runs, "wall")["wall"] - best(zero, "wall")["wall"]
            cpu = best(runs, "cpu")["cpu"] - best(zero, "cpu")["cpu"]
            fig[e] = {"insns": insns, "wall_s": best(runs, "wall")["wall"], "wall": insns / wall / 1e6 if wall > 0 else 0,
                      "cpu": insns / cpu / 1e6 if cpu > 0 else 0}
        # hostvisor's own count: every run retires exactly the loop's count more than an empty one.
        base = empty["hostvisor"]["retired"]
        off = [r["retired"] - base - r["loop_insns"] for r in loaded["hostvisor"]]
        if any(off):
            print(f"!! {workload}: retired instructions differ from the loop's count by {off}", flush=True)
            failed = True
        hv_best = best(loaded["hostvisor"], "vcpu_cpu")
        vcpu_s = hv_best["vcpu_cpu"] - best(empties["hostvisor"] + [empty["hostvisor"]], "vcpu_cpu")["vcpu_cpu"]
        vcpu = (hv_best["retired"] - base) / vcpu_s / 1e6 if vcpu_s > 0 else 0
        rows.append((workload, trial["hostvisor"]["per_iteration"], fig, vcpu, "exact" if not any(off) else "OFF"))
        h, q = fig["hostvisor"], fig["qemu"]
        print(f"  {workload}: hostvisor {iterations['hostvisor']} iterations ({h['insns']/1e6:.0f} M insns, best "
              f"{h['wall_s']:.2f} s wall), QEMU {iterations['qemu']} ({q['insns']/1e6:.0f} M insns, best "
              f"{q['wall_s']:.2f} s wall), empty runs {empty['hostvisor']['wall']:.2f} s / "
              f"{empty['qemu']['wall']:.2f} s", flush=True)
    except (RunError, OSError) as e:
        print(f"!! {e}", flush=True)
        failed = True

print()
print(f"{'':20} | {'MIPS on wall time':^29} | {'MIPS on process CPU time':^29} | {'hostvisor vCPU':^14} |")
print(f"{'workload':9} {'insns/iter':>10} | {'hostvisor':>10} {'QEMU':>9} {'ratio':>8} | {'hostvisor':>10} {'QEMU':>9} "
      f"{'ratio':>8} | {'thread MIPS':>14} | retired vs loop count")
for workload, per, fig, vcpu, agree in rows:
    h, q = fig["hostvisor"], fig["qemu"]
    rw = h["wall"] / q["wall"] if q["wall"] else 0
    rc = h["cpu"] / q["cpu"] if q["cpu"] else 0
    print(f"{workload:9} {per:>10} | {h['wall']:10.1f} {q['wall']:9.1f} {rw:7.3f}x | {h['cpu']:10.1f} {q['cpu']:9.1f} "
          f"{rc:7.3f}x | {vcpu:14.1f} | {agree}")
print("(MIPS = million guest instructions per second; ratio = hostvisor / QEMU, above 1 is faster than QEMU)")
for workload, *_ in rows:
    print(f"  {workload}: {DESCRIPTION[workload]}")
sys.exit(1 if failed or len(rows) != len(WORKLOADS) else 0)
PY
