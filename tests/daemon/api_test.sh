#!/usr/bin/env bash
# The daemon's HTTP API end to end with a real client: curl over the unix
# socket, every endpoint and its error cases. VMs are run by fake_vm.py (the
# control protocol without a guest) so this takes seconds; exec and file
# copies go through a real hostvisor-agent behind the fake VM's vsock socket.
# The real `hostvisor run` is exercised by cli_e2e_test.sh.
# Usage: api_test.sh HOSTVISOR AGENT
set -euo pipefail
HOSTVISOR=$1
AGENT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/hv-api-test.XXXXXX)
chmod 755 "$WORK"
export XDG_DATA_HOME=$WORK/data XDG_RUNTIME_DIR=$WORK/run FAKE_VM_AGENT=$AGENT
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR" "$WORK/sock"
chmod 700 "$XDG_RUNTIME_DIR"
SOCK=$WORK/sock/api.sock
LIB=$XDG_DATA_HOME/hostvisor
DAEMON_PID=
failures=0

cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
  # Every VM and switch process the test made (their pids are in the library).
  for f in "$LIB"/vms/*/state.json "$LIB"/networks/*.json; do
    [ -f "$f" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid",0))' "$f" 2>/dev/null || echo 0)
    [ "$pid" -gt 0 ] 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_daemon() {
  "$HOSTVISOR" daemon --socket "$SOCK" --vm-binary "$HERE/fake_vm.py" >>"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 100); do [ -S "$SOCK" ] && return; sleep 0.05; done
  echo "the daemon did not start"; cat "$WORK/daemon.log"; exit 1
}

# api METHOD PATH [BODY]: sets STATUS and BODY.
api() {
  local out
  out=$(curl -sS --unix-socket "$SOCK" -X "$1" -w '\n%{http_code}' ${3:+-H 'Content-Type: application/json' --data-binary "$3"} "http://localhost$2")
  STATUS=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]);
for k in sys.argv[2].split("."): v = v[int(k)] if isinstance(v, list) else v[k]
print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$BODY" "$1"; }

expect() {  # expect STATUS [FIELD VALUE]...
  local want=$1; shift
  local what="${CASE:-?}"
  if [ "$STATUS" != "$want" ]; then
    echo "FAIL $what: status $STATUS, want $want: $BODY"; failures=$((failures + 1)); return
  fi
  while [ $# -ge 2 ]; do
    local got; got=$(field "$1" 2>/dev/null || echo "<missing>")
    if [ "$got" != "$2" ]; then echo "FAIL $what: $1 is '$got', want '$2'"; failures=$((failures + 1)); fi
    shift 2
  done
  echo "ok   $what"
}
expect_error() {  # expect_error STATUS CODE: a JSON error with a message
  expect "$1" error.code "$2"
  local message; message=$(field error.message 2>/dev/null || true)
  if [ -z "$message" ]; then echo "FAIL $CASE: no error message"; failures=$((failures + 1)); fi
}
# A process that ended (a zombie whose parent, not us, has yet to reap it counts).
gone() { ! [ -e /proc/$1/stat ] || [ "$(cut -d')' -f2 /proc/$1/stat | cut -d' ' -f2)" = Z ]; }
last_start() { grep -- '^--- ' "$LIB/vms/$1/logs/hostvisor.log" | tail -n 1; }
contains() {  # contains HAYSTACK NEEDLE
  if [[ "$1" != *"$2"* ]]; then echo "FAIL $CASE: '$2' not in: ${1:0:400}"; failures=$((failures + 1)); else echo "ok   $CASE"; fi
}

start_daemon
CASE="socket is 0600"; contains "$(stat -c %a "$SOCK")" 600

CASE="GET /v1"; api GET /v1; expect 200 api v1
CASE="empty list"; api GET /v1/vms; expect 200; contains "$BODY" "[]"
CASE="create"; api POST /v1/vms '{"name":"alpha","data_disk_bytes":1048576}'; expect 201 name alpha state stopped disks.0.path disks/data.qcow2
CASE="data disk is a clean qcow2"; contains "$(qemu-img check "$LIB/vms/alpha/disks/data.qcow2" 2>&1)" "No errors"
CASE="create again"; api POST /v1/vms '{"name":"alpha"}'; expect_error 409 conflict
CASE="create: bad name"; api POST /v1/vms '{"name":"../etc"}'; expect_error 400 invalid-argument
CASE="create: bad JSON"; api POST /v1/vms '{"name":'; expect_error 400 invalid-argument
CASE="create: unknown field"; api POST /v1/vms '{"name":"x","colour":"red"}'; expect_error 400 invalid-argument
CASE="create: no body"; api POST /v1/vms; expect_error 400 invalid-argument
# Shares: checked when configured, passed to the VM process, and no snapshot.
mkdir -p "$WORK/proj"
CASE="create with a share"; api POST /v1/vms "{\"name\":\"shared\",\"data_disk_bytes\":0,\"shares\":[{\"path\":\"$WORK/proj\",\"readonly\":true,\"mount\":\"/home/u/proj\"}]}"
expect 201 shares.0.path "$WORK/proj" shares.0.tag share0 shares.0.readonly True shares.0.mount /home/u/proj
for bad in '"relative/dir"' '"/no/such/dir"'; do
  CASE="share: path $bad"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":[{\"path\":$bad}]}"; expect_error 400 invalid-argument
done
CASE="share: bad tag"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":[{\"path\":\"$WORK\",\"tag\":\"a/b\"}]}"; expect_error 400 invalid-argument
CASE="share: two with one tag"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":[{\"path\":\"$WORK\",\"tag\":\"t\"},{\"path\":\"$WORK/proj\",\"tag\":\"t\"}]}"; expect_error 400 invalid-argument
CASE="share: a mount path the guest cannot be given"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":[{\"path\":\"$WORK\",\"mount\":\"/a:b\"}]}"; expect_error 400 invalid-argument
contains "$(field error.message)" "mount=/a:b"
CASE="share: not a list"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":\"$WORK\"}"; expect_error 400 invalid-argument
CASE="share: readonly not a boolean"; api POST /v1/vms "{\"name\":\"bad\",\"shares\":[{\"path\":\"$WORK\",\"readonly\":\"yes\"}]}"; expect_error 400 invalid-argument
CASE="no VM made of a refused share"; api GET /v1/vms/bad; expect_error 404 not-found
CASE="start a VM with a share"; api POST /v1/vms/shared/start; expect 200 state running
contains "$(last_start shared)" "--share $WORK/proj,tag=share0,readonly=on,mount=/home/u/proj"
CASE="snapshot of a VM with a share"; api POST /v1/vms/shared/snapshots '{"name":"s1"}'; expect_error 409 conflict
contains "$(field error.message)" "shared folders (share0)"
CASE="suspend of a VM with a share"; api POST /v1/vms/shared/suspend; expect_error 409 conflict
CASE="clone of a running VM with a share"; api POST /v1/vms/shared/clone '{"name":"shared2"}'; expect_error 409 conflict
CASE="it still runs"; api GET /v1/vms/shared; expect 200 state running
CASE="shares changed while stopped"; api POST /v1/vms/shared/kill; api PATCH /v1/vms/shared '{"shares":[]}'; expect 200 shares '[]'
api DELETE /v1/vms/shared

CASE="get"; api GET /v1/vms/alpha; expect 200 name alpha cpus 1
CASE="get: missing"; api GET /v1/vms/ghost; expect_error 404 not-found
CASE="get: traversal"; api GET /v1/vms/..%2F..%2Fetc; expect_error 400 invalid-argument
CASE="update"; api PATCH /v1/vms/alpha '{"cpus":2,"memory":"256M"}'; expect 200 cpus 2 memory 256M
CASE="update: bad"; api PATCH /v1/vms/alpha '{"cpus":0}'; expect_error 400 invalid-argument
CASE="update: rename"; api PATCH /v1/vms/alpha '{"name":"beta"}'; expect_error 400 invalid-argument
CASE="pause: not running"; api POST /v1/vms/alpha/pause; expect_error 409 conflict
CASE="metrics: not running"; api GET /v1/vms/alpha/metrics; expect_error 409 conflict
CASE="wrong method"; api GET /v1/vms/alpha/start; expect_error 405 method-not-allowed
CASE="unknown path"; api GET /v1/vms/alpha/frobnicate; expect_error 404 not-found
CASE="not v1"; api GET /v2/vms; expect_error 404 not-found

# The event stream, read in the background while the lifecycle runs.
curl -sS -N --unix-socket "$SOCK" http://localhost/v1/events >"$WORK/events" 2>/dev/null &
EVENTS_PID=$!
sleep 0.3

CASE="start"; api POST /v1/vms/alpha/start; expect 200 state running
PID=$(field pid)
CASE="start: running already"; api POST /v1/vms/alpha/start; expect_error 409 conflict
CASE="update: running"; api PATCH /v1/vms/alpha '{"cpus":1}'; expect_error 409 conflict
CASE="VM got its settings"; contains "$(cat "$LIB/vms/alpha/logs/hostvisor.log")" "--cpus 2"
CASE="pause"; api POST /v1/vms/alpha/pause; expect 200 state paused
CASE="list shows paused"; api GET /v1/vms; expect 200 0.state paused
CASE="resume"; api POST /v1/vms/alpha/resume; expect 200 state running
CASE="reset"; api POST /v1/vms/alpha/reset; expect 200 state running
CASE="metrics"; api GET /v1/vms/alpha/metrics; expect 200 vcpus.0.exits 42
CASE="balloon set"; api PUT /v1/vms/alpha/balloon '{"bytes":1048576}'; expect 200 target_bytes 1048576
CASE="balloon get"; api GET /v1/vms/alpha/balloon; expect 200 actual_bytes 1048576
CASE="balloon: no bytes"; api PUT /v1/vms/alpha/balloon '{}'; expect_error 400 invalid-argument
CASE="port forward add"; api POST /v1/vms/alpha/port-forwards '{"host_port":18080,"guest_port":80}'; expect 201 host_port 18080
CASE="the forward is in the VM's config"; api GET /v1/vms/alpha; expect 200 nets.0 "user,hostfwd=tcp:127.0.0.1:18080-:80"
CASE="port forward remove"; api DELETE /v1/vms/alpha/port-forwards '{"host_port":18080}'; expect 204
CASE="the forward left the config"; api GET /v1/vms/alpha; expect 200 nets.0 user
CASE="port forward remove: none"; api DELETE /v1/vms/alpha/port-forwards '{"host_port":18080}'; expect_error 500 failed
CASE="port forward: bad port"; api POST /v1/vms/alpha/port-forwards '{"host_port":0}'; expect_error 400 invalid-argument
CASE="a forward comes back on restart"; api POST /v1/vms/alpha/port-forwards '{"host_port":18081,"guest_port":8081}'
api POST /v1/vms/alpha/kill; api POST /v1/vms/alpha/start; expect 200 state running
contains "$(last_start alpha)" "--net user,hostfwd=tcp:127.0.0.1:18081-:8081"
api DELETE /v1/vms/alpha/port-forwards '{"host_port":18081}'
PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$LIB/vms/alpha/state.json")
CASE="exec"; api POST /v1/vms/alpha/exec '{"argv":["echo","hello from the agent"]}'; expect 200 status 0 stdout $'hello from the agent'
CASE="exec: stdin and status"; api POST /v1/vms/alpha/exec '{"argv":["sh","-c","cat; exit 3"],"stdin":"piped"}'; expect 200 status 3 stdout piped
CASE="exec: no such command"; api POST /v1/vms/alpha/exec '{"argv":["/nonexistent/cmd"]}'
[ "$STATUS" = 200 ] && [ "$(field status)" != 0 ] || [ "$STATUS" -ge 400 ]; echo "ok   $CASE ($STATUS)"
CASE="exec: empty argv"; api POST /v1/vms/alpha/exec '{"argv":[]}'; expect_error 400 invalid-argument
CASE="file put"; STATUS=$(curl -sS --unix-socket "$SOCK" -X PUT --data-binary "file body" -o /dev/null -w '%{http_code}' "http://localhost/v1/vms/alpha/files?path=$WORK/guest-file&mode=0640"); BODY={}; expect 204
CASE="file arrived with its mode"; contains "$(cat "$WORK/guest-file") $(stat -c %a "$WORK/guest-file")" "file body 640"
CASE="file get"; contains "$(curl -sS --unix-socket "$SOCK" "http://localhost/v1/vms/alpha/files?path=$WORK/guest-file")" "file body"
CASE="file get: missing"; api GET "/v1/vms/alpha/files?path=$WORK/nothing-here"; [ "$STATUS" -ge 400 ] && echo "ok   $CASE" || { echo "FAIL $CASE: $STATUS"; failures=$((failures + 1)); }
CASE="file: relative path"; api GET "/v1/vms/alpha/files?path=etc/passwd"; expect_error 400 invalid-argument
CASE="console over WebSocket"; contains "$(python3 "$HERE/ws_console.py" "$SOCK" alpha "typed keys" "TYPED KEYS")" "fake console replay"
CASE="console: not a WebSocket"; api GET /v1/vms/alpha/console; expect_error 426 upgrade-required
CASE="console: no such VM"; contains "$(python3 "$HERE/ws_console.py" "$SOCK" ghost x x || true)" "404 Not Found"
CASE="logs"; contains "$(curl -sS --unix-socket "$SOCK" "http://localhost/v1/vms/alpha/logs")" "fake_vm: started"
CASE="console log"; contains "$(curl -sS --unix-socket "$SOCK" "http://localhost/v1/vms/alpha/logs?which=console")" "TYPED KEYS"

CASE="snapshot"; api POST /v1/vms/alpha/snapshots '{"name":"s1"}'; expect 201 name s1
CASE="snapshot: exists"; api POST /v1/vms/alpha/snapshots '{"name":"s1"}'; expect_error 409 conflict
CASE="snapshot: bad name"; api POST /v1/vms/alpha/snapshots '{"name":"S 1"}'; expect_error 400 invalid-argument
CASE="snapshots list"; api GET /v1/vms/alpha/snapshots; expect 200 0.name s1

# The daemon restarts; the VM runs on and is found again, paused state and all.
api POST /v1/vms/alpha/pause
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
CASE="VM outlives the daemon"; kill -0 "$PID" && echo "ok   $CASE" || { echo "FAIL $CASE"; failures=$((failures + 1)); }
start_daemon
CASE="restarted daemon finds it"; api GET /v1/vms/alpha; expect 200 state paused pid "$PID"
api POST /v1/vms/alpha/resume
curl -sS -N --unix-socket "$SOCK" http://localhost/v1/events >>"$WORK/events" 2>/dev/null &
EVENTS_PID2=$!
sleep 0.3

CASE="clone a running VM (snapshots it first)"; api POST /v1/vms/alpha/clone '{"name":"beta"}'; expect 201 name beta state suspended
CASE="the clone's snapshot"; api GET /v1/vms/alpha/snapshots; contains "$BODY" clone-beta
CASE="clone from a snapshot"; api POST /v1/vms/alpha/clone '{"name":"gamma","snapshot":"s1"}'; expect 201 state suspended
CASE="clone: missing snapshot"; api POST /v1/vms/alpha/clone '{"name":"eps","snapshot":"nope"}'; expect_error 404 not-found
CASE="clone: onto itself"; api POST /v1/vms/alpha/clone '{"name":"alpha"}'; expect_error 409 conflict
CASE="clone: name taken"; api POST /v1/vms/alpha/clone '{"name":"gamma"}'; expect_error 409 conflict
CASE="clone starts from its snapshot as a clone"; api POST /v1/vms/gamma/start; expect 200 state running
contains "$(cat "$LIB/vms/gamma/logs/hostvisor.log")" "--restore $LIB/vms/gamma/snapshots/s1 --clone"

# Load: 200 requests at once while two VMs run (alpha and gamma): lists,
# gets, metrics and agent execs; every one answered, and answered right.
CASE="200 parallel requests"
seq 200 | xargs -P 200 -I{} sh -c '
  case $(({} % 4)) in
    0) out=$(curl -sS --unix-socket "$0" -w " %{http_code}" http://localhost/v1/vms); want="\"name\":\"gamma\"" ;;
    1) out=$(curl -sS --unix-socket "$0" -w " %{http_code}" http://localhost/v1/vms/alpha); want="\"state\":\"running\"" ;;
    2) out=$(curl -sS --unix-socket "$0" -w " %{http_code}" http://localhost/v1/vms/gamma/metrics); want="\"exits\":42" ;;
    3) out=$(curl -sS --unix-socket "$0" -w " %{http_code}" -d "{\"argv\":[\"echo\",\"n{}\"]}" http://localhost/v1/vms/alpha/exec); want="\"stdout\":\"n{}\\n\"" ;;
  esac
  case "$out" in *" 200") ;; *) echo "request {}: $out"; exit 1 ;; esac
  case "$out" in *"$want"*) ;; *) echo "request {}: $want not in $out"; exit 1 ;; esac
' "$SOCK" >"$WORK/load.out" 2>&1 && echo "ok   $CASE" || { echo "FAIL $CASE: $(head -5 "$WORK/load.out")"; failures=$((failures + 1)); }

CASE="stop (power button)"; api POST /v1/vms/alpha/stop '{"timeout_seconds":10}'; expect 200 state stopped
CASE="process gone"; gone "$PID" && echo "ok   $CASE" || { echo "FAIL $CASE"; failures=$((failures + 1)); }
CASE="stop: not running"; api POST /v1/vms/alpha/stop; expect_error 409 conflict
CASE="clone a stopped VM (its disks copied)"; api POST /v1/vms/alpha/clone '{"name":"delta"}'; expect 201 state stopped disks.0.path disks/data.qcow2
CASE="the copy is a clean qcow2"; contains "$(qemu-img check "$LIB/vms/delta/disks/data.qcow2" 2>&1)" "No errors"

CASE="restore"; api POST /v1/vms/alpha/snapshots/s1/restore; expect 200 state running
contains "$(last_start alpha)" "--restore $LIB/vms/alpha/snapshots/s1"
CASE="restore without verify checks no checksums"; contains "$(last_start alpha | grep -c -- '--verify' || true)" 0
CASE="restore with verify"; api POST /v1/vms/alpha/snapshots/s1/restore '{"verify":true}'; expect 200 state running
contains "$(last_start alpha)" "--restore $LIB/vms/alpha/snapshots/s1 --verify"
CASE="restore: verify not a boolean"; api POST /v1/vms/alpha/snapshots/s1/restore '{"verify":"yes"}'; expect_error 400 invalid-argument
CASE="restore: missing"; api POST /v1/vms/alpha/snapshots/none/restore; expect_error 404 not-found
CASE="suspend"; api POST /v1/vms/alpha/suspend; expect 200 state suspended
CASE="start continues the suspended state"; api POST /v1/vms/alpha/start; expect 200 state running
contains "$(last_start alpha)" "--restore $LIB/vms/alpha/suspended"
CASE="kill"; api POST /v1/vms/alpha/kill; expect 200 state stopped
CASE="next start boots (the suspend is used up)"; api POST /v1/vms/alpha/start; expect 200 state running
contains "$(last_start alpha | grep -c -- '--restore' || true)" 0

CASE="delete snapshot"; api DELETE /v1/vms/alpha/snapshots/clone-beta; expect 204
CASE="delete snapshot: missing"; api DELETE /v1/vms/alpha/snapshots/clone-beta; expect_error 404 not-found

CASE="a VM that fails to start says why"; api POST /v1/vms '{"name":"broken","cpus":63}'; api POST /v1/vms/broken/start
expect_error 500 failed; contains "$(field error.message)" "too many for a test"
CASE="failed start leaves it stopped"; api GET /v1/vms/broken; expect 200 state stopped

CASE="network create"; api POST /v1/networks '{"name":"lab","dhcp":"10.77.0.0/24"}'; expect 201 name lab running True
CASE="network list"; api GET /v1/networks; expect 200 0.name lab 0.running True
CASE="network create: exists"; api POST /v1/networks '{"name":"lab"}'; expect_error 409 conflict
CASE="network create: bad dhcp"; api POST /v1/networks '{"name":"lab2","dhcp":"nonsense"}'; expect_error 400 invalid-argument
CASE="network in use"; api POST /v1/vms '{"name":"netvm","nets":["internal,name=lab"]}'; api DELETE /v1/networks/lab; expect_error 409 conflict
api DELETE /v1/vms/netvm
CASE="network delete"; api DELETE /v1/networks/lab; expect 204
CASE="network delete: missing"; api DELETE /v1/networks/lab; expect_error 404 not-found

CASE="delete running"; api DELETE /v1/vms/alpha; expect_error 409 conflict
CASE="delete with force"; api DELETE "/v1/vms/alpha?force=true"; expect 204
CASE="its directory is gone"; [ ! -e "$LIB/vms/alpha" ] && echo "ok   $CASE" || { echo "FAIL $CASE"; failures=$((failures + 1)); }
CASE="delete missing"; api DELETE /v1/vms/alpha; expect_error 404 not-found

kill "$EVENTS_PID" "$EVENTS_PID2" 2>/dev/null || true
CASE="events: lifecycle"; contains "$(cat "$WORK/events")" '"state":"paused"'
CASE="events: created"; contains "$(cat "$WORK/events")" '"type":"vm-created","vm":"beta"'
CASE="events: deleted"; contains "$(cat "$WORK/events")" '"type":"vm-deleted","vm":"alpha"'

# Only the owning user gets in: with the socket opened up to everyone,
# another user's connection is still closed unanswered (SO_PEERCRED).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 666 "$SOCK"
  CASE="another user is refused"
  if setpriv --reuid=65534 --regid=65534 --clear-groups curl -sS -m 5 --unix-socket "$SOCK" http://localhost/v1/vms >/dev/null 2>&1; then
    echo "FAIL $CASE"; failures=$((failures + 1))
  else echo "ok   $CASE"; fi
  chmod 600 "$SOCK"
fi

echo "$failures failures"
[ "$failures" = 0 ]
