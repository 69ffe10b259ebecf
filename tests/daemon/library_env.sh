# Sourced by the daemon's test scripts (after HOSTVISOR is set): a private
# VM library and runtime directory under a temporary WORK, the helpers
# every script uses, and a cleanup at exit that ends every VM process the
# library knows and the daemon (the one the CLI started, from daemon.lock,
# and DAEMON_PID if the script started one), then removes WORK.
# Usage: . library_env.sh NAME    (WORK is /tmp/NAME.XXXXXX)
WORK=$(mktemp -d "/tmp/$1.XXXXXX")
export XDG_DATA_HOME=$WORK/data XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
LIB=$XDG_DATA_HOME/hostvisor
SOCK=$XDG_RUNTIME_DIR/hostvisor/api.sock
failures=0
hv() { "$HOSTVISOR" "$@"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

cleanup_library() {
  for f in "$LIB"/vms/*/state.json; do
    [ -f "$f" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid",0))' "$f" 2>/dev/null || echo 0)
    [ "$pid" -gt 0 ] 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  pid=$(cat "$LIB/daemon.lock" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "${DAEMON_PID:-}" ] && kill "$DAEMON_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup_library EXIT
