#!/usr/bin/env bash
# kill -9 of the VM process (the real `hostvisor run` on the default guest)
# at random points, ROUNDS times: odd rounds in the middle of a snapshot,
# even rounds in the middle of its start (the VM process building the
# machine from a snapshot). Each time the daemon notices the VM stopped,
# every snapshot is whole (its header written last) or absent, no temporary
# directory is left, `qemu-img check` is clean on the VM's disks, and at the
# end a whole snapshot restores to a guest that answers.
# Usage: vm_fault_test.sh HOSTVISOR [ROUNDS]
set -euo pipefail
HOSTVISOR=$1
ROUNDS=${2:-5}
. "$(dirname "$0")/library_env.sh" hv-vm-fault
vm_pid() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$LIB/vms/f/state.json"; }
wait_for_agent() {
  for _ in $(seq 240); do hv vm exec f -- true >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "FAIL the agent did not answer"; exit 1
}

# One boot; each round continues from the base snapshot (a restore takes a
# second where a boot takes ten).
hv vm create f --accel emu --memory 256M --data-disk 64M >/dev/null
hv vm start f >/dev/null
wait_for_agent
hv vm snapshot f base >/dev/null
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 0 ]; then
    # Mid-start: the restore's VM process is killed as soon as it exists,
    # or a little later, while it reads the snapshot and builds the machine.
    hv vm restore f base >/dev/null 2>&1 &
    client=$!
    for _ in $(seq 200); do pid=$(vm_pid); [ "$pid" != 0 ] && break; sleep 0.01; done
    sleep "0.$((RANDOM % 30))"
    kill -9 "$pid" 2>/dev/null || true
    what=start
  else
    [ "$round" = 1 ] || hv vm restore f base >/dev/null
    wait_for_agent
    hv vm exec f -- sh -c "echo round $round > /tmp/mark"
    pid=$(vm_pid)
    hv vm snapshot f "s$round" >/dev/null 2>&1 &
    client=$!
    sleep "0.$((RANDOM % 40))"
    kill -9 "$pid"
    what=snapshot
  fi
  wait "$client" 2>/dev/null || true
  # The daemon has noted the end once state.json has no process.
  for _ in $(seq 50); do [ "$(vm_pid)" = 0 ] && break; sleep 0.1; done
  [ "$(vm_pid)" = 0 ] || { echo "FAIL round $round: the daemon did not notice the VM's end"; exit 1; }
  hv vm list | grep -q "^f .*stopped" || { echo "FAIL round $round: the daemon still shows f running"; exit 1; }
  for entry in "$LIB"/vms/f/snapshots/* "$LIB"/vms/f/snapshots/.*; do
    case $(basename "$entry") in .|..|'*'|'.*') continue ;; esac
    [ -d "$entry" ] || continue
    [ -f "$entry/header" ] || { echo "FAIL round $round: $(basename "$entry") is not a whole snapshot"; exit 1; }
  done
  for image in "$LIB"/vms/f/disks/*.qcow2 "$LIB"/vms/f/snapshots/*.qcow2; do
    [ -f "$image" ] || continue
    qemu-img check -q "$image" || { echo "FAIL round $round: qemu-img check $image"; exit 1; }
  done
  echo "ok   round $round: killed mid-$what; $(ls "$LIB/vms/f/snapshots" | grep -c '^s[0-9]*$' || true) whole snapshots, disks clean"
done
whole=$(cd "$LIB/vms/f/snapshots" && ls -d s[0-9]* 2>/dev/null | grep -v '\.' | head -1 || true)
if [ -n "$whole" ]; then
  hv vm restore f "$whole" >/dev/null
  wait_for_agent
  out=$(hv vm exec f -- cat /tmp/mark)
  [ "$out" = "round ${whole#s}" ] && echo "ok   snapshot $whole restores: $out" || { echo "FAIL restore of $whole: '$out'"; exit 1; }
  hv vm kill f >/dev/null
else
  echo "ok   (every kill came before a snapshot was whole)"
fi
echo "0 failures"
