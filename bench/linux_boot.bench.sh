#!/usr/bin/env bash
# Boot time of the default guest (Debian's cloud kernel + hostvisor's busybox
# initramfs) on hostvisor's software CPU and on QEMU TCG, same kernel, same
# initramfs, same command line, one CPU and 512 MiB each: wall time from start
# to the init script's banner, to the shell prompt, and — after typing
# `poweroff` — to the process's exit. Prints both and hostvisor/QEMU.
# Usage: bench/linux_boot.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || hostvisor=$(find "$build" -name hostvisor -type f -perm -u+x | head -n1)
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed (scripts/setup-host.sh)"; exit 1; }

exec python3 - "$hostvisor" <<'PY'
import os, select, signal, subprocess, sys, tempfile, time

hostvisor = sys.argv[1]
cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache"), "hostvisor")
kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
BANNER, PROMPT = b"hostvisor default guest:", b"/ # "
BOOT_TIMEOUT, EXIT_TIMEOUT = 300, 60


def boot(name, argv):
    """Start argv, wait for the banner and the prompt, type poweroff, wait
    for the exit. Returns (banner_s, prompt_s, exit_s, status) or raises."""
    log = tempfile.TemporaryFile()
    start = time.monotonic()
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
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
        return t_banner, t_prompt, time.monotonic() - start, child.returncode
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

runs = {
    "hostvisor --accel emu": [hostvisor, "run", "--accel", "emu", "--cpus", "1", "--memory", "512M", "--no-reboot"],
    "qemu-system-x86_64 -accel tcg": ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic",
                                       "-no-reboot", "-kernel", kernel, "-initrd", initrd,
                                       "-append", "console=ttyS0 panic=-1"],
}
results, failed = {}, False
for name, argv in runs.items():
    try:
        results[name] = boot(name, argv)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"!! {e}", flush=True)
        failed = True

print(f"default guest boot, 1 CPU, 512 MiB, wall seconds (kernel {os.path.realpath(kernel)})")
print(f"{'':32} {'banner':>8} {'prompt':>8} {'exit':>8} {'status':>6}")
for name, (b, p, e, status) in results.items():
    print(f"{name:32} {b:8.1f} {p:8.1f} {e:8.1f} {status:>6}")
if len(results) == 2:
    hv, qemu = results.values()
    print(f"{'ratio hostvisor/QEMU':32} {hv[0]/qemu[0]:8.2f} {hv[1]/qemu[1]:8.2f} {hv[2]/qemu[2]:8.2f}")
sys.exit(1 if failed else 0)
PY
