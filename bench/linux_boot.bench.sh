#!/usr/bin/env bash
# Boot time of the default guest (Debian's cloud kernel + hostvisor's busybox
# initramfs) on hostvisor's software CPU and on QEMU TCG, same kernel, same
# initramfs, same command line, one CPU and 512 MiB each: wall time from start
# to the init script's banner, to the shell prompt, and — after typing
# `poweroff` — to the process's exit. The two alternate, best of BENCH_REPEAT
# (default 3) per column. Prints both and hostvisor/QEMU, and from
# HOSTVISOR_EMU_STATS the guest instructions hostvisor's vCPU retired from
# power-on to power-off and its MIPS on the vCPU thread's CPU time (the
# speed on the kernel's own code), against the targets of issues #3 and #18;
# with HOSTVISOR_EMU_TIER=jit also the translating tier's statistics line.
# Usage: bench/linux_boot.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || hostvisor=$(find "$build" -name hostvisor -type f -perm -u+x | head -n1)
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed (scripts/setup-host.sh)"; exit 1; }

exec python3 - "$hostvisor" <<'PY'
import os, re, resource, select, signal, subprocess, sys, tempfile, time

hostvisor = sys.argv[1]
cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"), "hostvisor")
kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
BANNER, PROMPT = b"hostvisor default guest:", b"/ # "
BOOT_TIMEOUT, EXIT_TIMEOUT = 300, 60
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CMDLINE = "console=ttyS0 panic=-1"
STATS = re.compile(rb"emu vCPU 0: (\d+) instructions retired in ([0-9.]+) s of thread CPU time[^(]*"
                   rb"\((\d+) exits, ([0-9.]+) s halted\)")
TARGET_MIPS, TARGET_RATIO = 100, 5.0  # issue #3: >= 100 MIPS on the kernel's code, boot within 5x QEMU TCG


def boot(name, argv):
    """Start argv, wait for the banner and the prompt, type poweroff, wait
    for the exit. Returns (banner_s, prompt_s, exit_s, status, stderr,
    cpu_s) or raises; cpu_s is the process's user + system time."""
    log = tempfile.TemporaryFile()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    env = dict(os.environ, HOSTVISOR_EMU_STATS="1")
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
    out, t_banner, t_prompt = b"", None, None
    try:
        deadline = start + BOOT_TIMEOUT
        while t_prompt is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{name}: no shell prompt within {BOOT_TIMEOUT} s; last output:\n"
                                   + out[-1500:].decode(errors="replace"))
            ready, _, _ = select.select([child.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    log.seek(0)
                    raise RuntimeError(f"{name} exited before the prompt (status {child.wait()}); stderr:\n"
                                       + log.read()[-1500:].decode(errors="replace"))
                out += chunk
                now = time.monotonic()
                if t_banner is None and BANNER in out:
                    t_banner = now - start
                if t_banner is not None and PROMPT in out[out.index(BANNER):]:
                    t_prompt = now - start
        child.stdin.write(b"poweroff\r")
        child.stdin.flush()
        # Keep draining stdout so the guest never blocks on a full pipe.
        end = time.monotonic() + EXIT_TIMEOUT
        while child.poll() is None:
            if time.monotonic() > end:
                raise RuntimeError(f"{name} did not exit within {EXIT_TIMEOUT} s of poweroff")
            ready, _, _ = select.select([child.stdout], [], [], 0.2)
            if ready and not os.read(child.stdout.fileno(), 65536):
                child.wait(timeout=max(0.1, end - time.monotonic()))
        t_exit = time.monotonic() - start
        log.seek(0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return t_banner, t_prompt, t_exit, child.returncode, log.read(), cpu
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()


if not (os.path.exists(kernel) and os.path.exists(initrd) and os.path.exists(os.path.join(cache, "default-guest.manifest"))):
    # First use on this machine: let hostvisor build the default guest (and
    # boot it once), so the timed runs below do not include the build.
    print(f"building the default guest in {cache} (once) ...", flush=True)
    boot("hostvisor (warm-up)", [hostvisor, "run", "--accel", "emu", "--memory", "512M"])


def qemu_version():
    try:
        return subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "qemu-system-x86_64 (version unknown)"


# The same kernel, initramfs and command line for both (not hostvisor's
# default-guest defaults, which may change the console).
def hostvisor_argv(binary):
    return [binary, "--log-level", "info", "run", "--accel", "emu", "--cpus", "1", "--memory", "512M",
            "--no-reboot", "--kernel", kernel, "--initrd", initrd, "--append", CMDLINE]


HV, QEMU, BASELINE = "hostvisor --accel emu", "qemu-system-x86_64 -accel tcg", "baseline hostvisor"
runs = {
    HV: hostvisor_argv(hostvisor),
    QEMU: ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic",
           "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE],
}
baseline = os.environ.get("HOSTVISOR_BASELINE")
if baseline:
    runs[BASELINE] = hostvisor_argv(baseline)
    print(f"baseline: {baseline}")
print(f"peer: {qemu_version()}, -accel tcg, booted in this run, alternating with hostvisor, best of {REPEAT}")
print(f"host: {os.cpu_count()} cores, shared with other work (load average "
      f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}): wall times vary with the load", flush=True)
results, failed = {name: [] for name in runs}, False
for _ in range(REPEAT):
    for name, argv in runs.items():
        try:
            results[name].append(boot(name, argv))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(f"!! {e}", flush=True)
            failed = True

best = {}
for name, rs in results.items():
    if rs:
        best[name] = tuple(min(r[i] for r in rs) for i in range(3)) + (max(r[3] for r in rs), min(r[5] for r in rs))
print(f"default guest boot, 1 CPU, 512 MiB, best wall seconds of {REPEAT} (kernel {os.path.realpath(kernel)}, "
      f"append \"{CMDLINE}\")")
print(f"{'':32} {'banner':>8} {'prompt':>8} {'exit':>8} {'status':>6} {'CPU s':>8}  (CPU s: user + system of the "
      f"whole process, start to exit)")
for name, (b, p, e, status, cpu) in best.items():
    print(f"{name:32} {b:8.1f} {p:8.1f} {e:8.1f} {status:>6} {cpu:8.1f}")


def print_ratio(label, a, b):
    print(f"{label:32} {a[0]/b[0]:8.2f} {a[1]/b[1]:8.2f} {a[2]/b[2]:8.2f} {'':>6} {a[4]/b[4]:8.2f}")


ratio = None
if HV in best and QEMU in best:
    ratio = best[HV][1] / best[QEMU][1]
    print_ratio("ratio hostvisor/QEMU", best[HV], best[QEMU])
if HV in best and BASELINE in best:
    print_ratio("ratio hostvisor/baseline", best[HV], best[BASELINE])

# Guest instructions on hostvisor, power-on to power-off (the shell is
# asked to power off as soon as it prompts), per run.
stats = []
for r in results[HV]:
    m = STATS.search(r[4])
    if m:
        stats.append((int(m.group(1)), float(m.group(2)), float(m.group(4)), r[2]))
    else:
        print("!! hostvisor printed no HOSTVISOR_EMU_STATS line; stderr:\n" + r[4][-800:].decode(errors="replace"))
        failed = True
mips = None
if stats:
    print("hostvisor vCPU 0, power-on to power-off (HOSTVISOR_EMU_STATS):")
    for retired, cpu, halted, wall in stats:
        print(f"  {retired / 1e6:8.1f} M instructions retired in {cpu:6.2f} s of vCPU thread CPU time: "
              f"{retired / cpu / 1e6:6.1f} MIPS   (of {wall:5.1f} s wall to exit, {halted:5.1f} s halted)")
    mips = max(retired / cpu / 1e6 for retired, cpu, _, _ in stats if cpu > 0)
# The translating tier's own line (HOSTVISOR_EMU_TIER=jit or --emu-tier jit):
# what it translated, ran and chained, and its code cache use.
for r in results[HV]:
    m = re.search(rb"emu vCPU 0: (jit: [^\n]*)", r[4])
    if m:
        print("  " + m.group(1).decode(errors="replace"))
print("targets (issue #3):")
if mips is not None:
    print(f"  guest MIPS on the kernel's own code  >= {TARGET_MIPS}: {mips:7.1f} MIPS (best run)   "
          f"{'met' if mips >= TARGET_MIPS else 'NOT met'}")
if ratio is not None:
    print(f"  boot to prompt within {TARGET_RATIO:g}x QEMU TCG:      {ratio:7.2f}x               "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
print("targets (issue #18, the translating tier):")
if mips is not None:
    print(f"  guest MIPS on the kernel's own code  >= 600: {mips:7.1f} MIPS (best run)   "
          f"{'met' if mips >= 600 else 'NOT met'}")
if ratio is not None:
    print(f"  boot to prompt within 1x QEMU TCG:        {ratio:7.2f}x               "
          f"{'met' if ratio <= 1.0 else 'NOT met'}")
sys.exit(1 if failed else 0)
PY
