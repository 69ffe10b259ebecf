#!/usr/bin/env bash
# kill -9 of the daemon in the middle of creates, clones (disk copies) and
# snapshots, at random points, ROUNDS times; after each, a restarted daemon
# must show a consistent library: every VM directory whole (config.json and
# state.json parse, the API lists exactly them), nothing left under a
# temporary name, and `qemu-img check` clean on every disk image.
# VMs are run by fake_vm.py (the daemon's side is what is under test).
# Usage: fault_test.sh HOSTVISOR [ROUNDS]
set -euo pipefail
HOSTVISOR=$1
ROUNDS=${2:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/hv-fault-test.XXXXXX)
export XDG_DATA_HOME=$WORK/data XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
SOCK=$XDG_RUNTIME_DIR/hostvisor/api.sock
LIB=$XDG_DATA_HOME/hostvisor
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null || true
  for f in "$LIB"/vms/*/state.json; do
    [ -f "$f" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid",0))' "$f" 2>/dev/null || echo 0)
    [ "$pid" -gt 0 ] 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_daemon() {
  "$HOSTVISOR" daemon --vm-binary "$HERE/fake_vm.py" >>"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 200); do
    curl -s --unix-socket "$SOCK" http://localhost/v1 >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "the daemon did not start"; tail "$WORK/daemon.log"; exit 1
}
api() { curl -s --unix-socket "$SOCK" -X "$1" ${3:+--data-binary "$3"} "http://localhost$2"; }

check_library() {
  local listed dirs
  listed=$(api GET /v1/vms | python3 -c 'import json,sys; print(" ".join(sorted(v["name"] for v in json.load(sys.stdin))))')
  dirs=$(cd "$LIB/vms" && ls -A | sort | tr '\n' ' ' | sed 's/ $//')
  if [ "$listed" != "$dirs" ]; then echo "FAIL round $1: the API lists '$listed', the library holds '$dirs'"; exit 1; fi
  for d in "$LIB"/vms/*/; do
    [ -d "$d" ] || continue
    python3 -c 'import json,sys; json.load(open(sys.argv[1])); json.load(open(sys.argv[2]))' "$d/config.json" "$d/state.json" ||
      { echo "FAIL round $1: $d has a broken config.json or state.json"; exit 1; }
    for image in "$d"/disks/*.qcow2; do
      [ -f "$image" ] || continue
      qemu-img check -q "$image" || { echo "FAIL round $1: qemu-img check $image"; exit 1; }
    done
  done
}

start_daemon
# A running VM to snapshot and clone, with a data disk that has data in it.
api POST /v1/vms '{"name":"base","data_disk_bytes":67108864}' >/dev/null
qemu-io -c 'write -P 0x5a 0 16M' "$LIB/vms/base/disks/data.qcow2" >/dev/null 2>&1 ||
  qemu-img convert -O qcow2 <(head -c 16M /dev/urandom) "$LIB/vms/base/disks/data.qcow2"
for round in $(seq "$ROUNDS"); do
  case $((round % 3)) in
    0) api POST /v1/vms "{\"name\":\"vm$round\",\"data_disk_bytes\":1073741824}" >/dev/null & ;;
    1) api POST /v1/vms/base/clone "{\"name\":\"clone$round\"}" >/dev/null & ;;
    2) { api POST /v1/vms/base/start >/dev/null; api POST /v1/vms/base/snapshots "{\"name\":\"s$round\"}" >/dev/null; } & ;;
  esac
  client=$!
  # A random point within the operation (a create or copy takes tens of ms).
  sleep "0.0$((RANDOM % 60 + 10))"
  kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  start_daemon
  # Interrupted operations' leftovers are gone once the daemon is back.
  leftovers=$(cd "$LIB/vms" && ls -A | grep '^\.' || true)
  [ -z "$leftovers" ] || { echo "FAIL round $round: left behind: $leftovers"; exit 1; }
  check_library "$round"
  api POST /v1/vms/base/kill >/dev/null || true
  echo "ok   round $round: $(ls "$LIB/vms" | wc -l) VMs, library consistent"
done
echo "0 failures"
