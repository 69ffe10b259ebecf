#!/usr/bin/env bash
# Boot through SeaBIOS (--firmware bios) and OVMF (--firmware uefi) on
# hostvisor's software CPU beside QEMU TCG with the same firmware (Debian's
# bios-256k.bin; OVMF_CODE_4M.fd with a fresh copy of OVMF_VARS_4M.fd on
# pflash) and the same boot medium: a GRUB rescue ISO made here with grub-mkrescue, holding the default
# guest's kernel and initramfs, on a virtio-blk disk, one CPU, 512 MiB. Wall
# time from start to GRUB's menu and to the shell prompt, best of
# BENCH_REPEAT (default 1), and hostvisor/QEMU. Issue #17's target: a ratio
# no worse than the direct-boot ratio of bench/linux_boot.bench.sh.
# Usage: bench/firmware_boot.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build (build the 'hostvisor' target)"; exit 1; }
for tool in qemu-system-x86_64 grub-mkrescue; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (scripts/setup-host.sh)"; exit 1; }
done
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hostvisor"
[ -f "$cache/vmlinuz" ] || { echo "no default guest in $cache: run 'hostvisor run' once"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/iso/boot/grub"
cp "$cache/vmlinuz" "$cache/initrd.img" "$work/iso/"
cat > "$work/iso/boot/grub/grub.cfg" <<'CFG'
set timeout=1
menuentry 'hostvisor default guest' {
  linux /vmlinuz console=ttyS0 panic=-1 tsc=reliable
  initrd /initrd.img
}
CFG
grub-mkrescue -o "$work/grub.iso" "$work/iso" >/dev/null 2>&1

exec python3 - "$hostvisor" "$work/grub.iso" "$work" <<'PY'
import os, select, shutil, signal, subprocess, sys, time

hostvisor, iso, work = sys.argv[1], sys.argv[2], sys.argv[3]
OVMF_CODE, OVMF_VARS = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
MENU, PROMPT = b"GNU GRUB", b"/ # "
TIMEOUT = 300


def boot(argv):
    """Seconds from start to GRUB's menu and to the shell prompt."""
    start = time.monotonic()
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    out, menu, prompt = b"", None, None
    try:
        while prompt is None and time.monotonic() - start < TIMEOUT:
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            now = time.monotonic() - start
            if menu is None and MENU in out:
                menu = now
            if menu is not None and prompt is None and PROMPT in out[out.find(MENU):]:
                prompt = now
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    if menu is None or prompt is None:
        raise SystemExit(f"{argv[0]}: no {'GRUB menu' if menu is None else 'shell prompt'} within {TIMEOUT} s")
    return menu, prompt


def fresh_vars(name):
    """A copy of OVMF's variable template for one boot: every run starts alike."""
    path = os.path.join(work, name + "-vars.fd")
    shutil.copyfile(OVMF_VARS, path)
    return path


qemu = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "512", "-nographic", "-vga", "none",
        "-nic", "none", "-drive", "file=" + iso + ",if=virtio,format=raw,readonly=on"]
hostvisor_run = [hostvisor, "run", "--accel", "emu", "--memory", "512M", "--net", "none", "--disk", iso + ",readonly=on"]
rows = {
    "SeaBIOS": {
        "hostvisor": lambda: hostvisor_run + ["--firmware", "bios"],
        "qemu-tcg": lambda: qemu + ["-bios", "/usr/share/seabios/bios-256k.bin"],
    },
    "OVMF": {
        "hostvisor": lambda: hostvisor_run + ["--firmware", "uefi,vars=" + fresh_vars("hostvisor")],
        "qemu-tcg": lambda: qemu + ["-drive", "if=pflash,format=raw,readonly=on,file=" + OVMF_CODE,
                                    "-drive", "if=pflash,format=raw,file=" + fresh_vars("qemu")],
    },
}
for firmware, peers in rows.items():
    best = {name: (float("inf"), float("inf")) for name in peers}
    for _ in range(REPEAT):
        for name, argv in peers.items():
            menu, prompt = boot(argv())
            best[name] = (min(best[name][0], menu), min(best[name][1], prompt))
    print(f"{firmware + ' boot of a GRUB ISO':30} {'GRUB menu':>10} {'shell':>10}")
    for name, (menu, prompt) in best.items():
        print(f"{name:30} {menu:9.1f}s {prompt:9.1f}s")
    h, q = best["hostvisor"], best["qemu-tcg"]
    print(f"{'hostvisor / QEMU':30} {h[0] / q[0]:9.2f}x {h[1] / q[1]:9.2f}x")
PY
