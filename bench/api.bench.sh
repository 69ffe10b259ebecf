#!/usr/bin/env bash
# The VM library daemon's API (issue 16).
#   - GET /v1/vms latency, p50/p99 over BENCH_API_REQUESTS (default 2000)
#     requests on one keep-alive connection, with BENCH_API_VMS (default 20)
#     VMs in the library, one of them running. Target: p99 <= 5 ms.
#     Peer: QEMU's QMP `query-status` round trip on its unix socket (a
#     management request to a running QEMU), in the same run.
#   - POST /v1/vms/NAME/start of a suspended default-guest VM to an answering
#     shell (exec `true` through the agent), and the start call alone.
#     Target: <= 50 ms. Needs the real `hostvisor run --control`; skipped,
#     saying so, when that is missing.
#   - The daemon's RSS (VmRSS) after all of it. Target: <= 20 MiB.
# Usage: bench/api.bench.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
hostvisor="$build/src/cli/hostvisor"
[ -x "$hostvisor" ] || { echo "no hostvisor binary in $build"; exit 1; }
work=$(mktemp -d /tmp/hv-api-bench.XXXXXX)
export XDG_DATA_HOME=$work/data XDG_RUNTIME_DIR=$work/run
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
sock=$XDG_RUNTIME_DIR/hostvisor/api.sock
daemon_pid= qemu_pid=
cleanup() {
  curl -s --unix-socket "$sock" -X POST http://localhost/v1/vms/bench0/kill >/dev/null 2>&1 || true
  curl -s --unix-socket "$sock" -X POST http://localhost/v1/vms/boot/kill >/dev/null 2>&1 || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
api() { curl -sS --unix-socket "$sock" -X "$1" ${3:+--data-binary "$3"} "http://localhost$2"; }

"$hostvisor" daemon --vm-binary "$here/../tests/daemon/fake_vm.py" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
vms=${BENCH_API_VMS:-20}
for i in $(seq 0 $((vms - 1))); do api POST /v1/vms "{\"name\":\"bench$i\",\"data_disk_bytes\":0}" >/dev/null; done
api POST /v1/vms/bench0/start >/dev/null
n=${BENCH_API_REQUESTS:-2000}
read -r p50 p99 < <(python3 "$here/api_latency.py" http "$sock" /v1/vms "$n")
echo "GET /v1/vms ($vms VMs, 1 running), $n requests: p50 ${p50} ms, p99 ${p99} ms (target p99 <= 5 ms)"
if command -v qemu-system-x86_64 >/dev/null; then
  qemu-system-x86_64 -machine none -nodefaults -display none -qmp "unix:$work/qmp.sock,server=on,wait=off" &
  qemu_pid=$!
  for _ in $(seq 100); do [ -S "$work/qmp.sock" ] && break; sleep 0.05; done
  read -r q50 q99 < <(python3 "$here/api_latency.py" qmp "$work/qmp.sock" "$n")
  echo "peer: QEMU QMP query-status, $n requests: p50 ${q50} ms, p99 ${q99} ms"
else
  echo "peer: qemu-system-x86_64 missing; no QMP figure"
fi
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/"$daemon_pid"/status)
api POST /v1/vms/bench0/kill >/dev/null
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true

# The real VM: a suspended default guest started, to its agent answering.
if "$hostvisor" run --help 2>/dev/null | grep -q -- '--control'; then
  "$hostvisor" daemon >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  api POST /v1/vms '{"name":"boot","accel":"emu","data_disk_bytes":0}' >/dev/null
  api POST /v1/vms/boot/start >/dev/null
  up=0
  for _ in $(seq 600); do
    if api POST /v1/vms/boot/exec '{"argv":["true"],"timeout_seconds":5}' 2>/dev/null | grep -q '"status":0'; then up=1; break; fi
    sleep 0.5
  done
  if [ "$up" = 1 ] && api POST /v1/vms/boot/suspend | grep -q suspended; then
    read -r start_ms shell_ms < <(python3 - "$sock" <<'PY'
import json, socket, sys, time
def call(method, path, body=b""):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (method, path, len(body), body))
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    return data
t0 = time.perf_counter()
call(b"POST", b"/v1/vms/boot/start")
t1 = time.perf_counter()
while b'"status":0' not in call(b"POST", b"/v1/vms/boot/exec", b'{"argv":["true"],"timeout_seconds":5}'):
    time.sleep(0.001)
t2 = time.perf_counter()
print("%.1f %.1f" % ((t1 - t0) * 1000, (t2 - t0) * 1000))
PY
)
    echo "start of a suspended default guest (emu): the start call ${start_ms} ms, to an answering shell (agent exec) ${shell_ms} ms (target <= 50 ms)"
  else
    echo "start of a suspended VM: the default guest did not come up to suspend it; no figure"
  fi
else
  echo "start of a suspended VM: this hostvisor run has no --control (the per-VM control server); no figure"
fi
echo "daemon RSS after the latency run: $((rss_kb / 1024)) MiB ($rss_kb KiB; target <= 20 MiB)"
if kill -0 "$daemon_pid" 2>/dev/null; then
  rss_kb=$(awk '/VmRSS/ {print $2}' /proc/"$daemon_pid"/status)
  echo "daemon RSS after the real VM's start: $((rss_kb / 1024)) MiB ($rss_kb KiB)"
fi
