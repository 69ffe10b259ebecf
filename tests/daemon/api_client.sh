# Sourced after library_env.sh by the daemon tests that drive a real
# hostvisor through the API with curl: starts the daemon, and gives
# api METHOD PATH [BODY] (prints the body, then the status on its own line)
# and expect_status NAME WANT OUTPUT [NEEDLE].
"$HOSTVISOR" daemon >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
api() {
  curl -s --unix-socket "$SOCK" -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} -w '\n%{http_code}' "http://hv$2"
}
expect_status() {
  local status=${3##*$'\n'}
  if [ "$status" != "$2" ]; then fail "$1: status $status, not $2: ${3:0:600}"; return; fi
  if [ -n "${4:-}" ] && [[ "$3" != *"$4"* ]]; then fail "$1: '$4' not in: ${3:0:600}"; return; fi
  echo "ok   $1"
}
