#!/usr/bin/env bash
# The web console end to end: `hostvisor web` (starting the daemon on first
# use), then curl against its TCP side (no token, another Host, another
# Origin on the WebSocket, a body over the bound, the token's controls,
# revoke), and a real browser (web_browser.py: chromium through WebDriver)
# that lists the VM, types into its console and sees the guest answer,
# pauses and resumes it and saves a screenshot to SCREENSHOT.
# On the default guest (software CPU, one boot); with FAKE_VM (the stand-in
# for `hostvisor run`) in seconds, the daemon started with --web-port.
# Usage: web_test.sh HOSTVISOR SCREENSHOT [FAKE_VM AGENT]
set -euo pipefail
HOSTVISOR=$1
SCREENSHOT=$2
FAKE_VM=${3:-}
export FAKE_VM_AGENT=${4:-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/library_env.sh" hv-web-test
ok() { echo "ok   $1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# status NAME WANT CURL-ARGS...: curl answers with HTTP status WANT.
status() {
  local name=$1 want=$2; shift 2
  local got; got=$(curl -s -o "$WORK/body" -w "%{http_code}" --max-time 5 "$@" || true)
  if [ "$got" = "$want" ]; then ok "$name ($got)"; else fail "$name: status $got, want $want: $(head -c 300 "$WORK/body")"; fi
}

if [ -n "$FAKE_VM" ]; then
  PORT=$(free_port)
  "$HOSTVISOR" daemon --vm-binary "$FAKE_VM" --web-port "$PORT" >"$WORK/daemon.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
  VM=alpha
  curl -sf --unix-socket "$SOCK" -X POST http://localhost/v1/vms -d "{\"name\":\"$VM\"}" >/dev/null
  curl -sf --unix-socket "$SOCK" -X POST http://localhost/v1/vms/$VM/start >/dev/null
  URL=$(hv web)
  [[ "$URL" == "http://127.0.0.1:$PORT/?token="* ]] && ok "hostvisor web serves on the daemon's --web-port" ||
    fail "hostvisor web: $URL is not on port $PORT"
else
  # The first command starts the daemon.
  URL=$(hv web --port 0)
  [ -S "$SOCK" ] && ok "hostvisor web started the daemon" || fail "no API socket at $SOCK"
  VM=web
  hv vm create $VM --accel emu --data-disk 0 >/dev/null
  hv vm start $VM >/dev/null
fi
PORT=$(echo "$URL" | sed -n 's|^http://127\.0\.0\.1:\([0-9]*\)/?token=[0-9a-f]*$|\1|p')
TOKEN=${URL##*token=}
[ -n "$PORT" ] && [ ${#TOKEN} -ge 32 ] && ok "the URL carries a token of ${#TOKEN} hex digits" || fail "the URL: $URL"
BASE=http://127.0.0.1:$PORT
BEARER=(-H "Authorization: Bearer $TOKEN")

# Listening on 127.0.0.1 only.
if ss -ltnH "sport = :$PORT" | awk '{print $4}' | grep -qx "127.0.0.1:$PORT"; then
  ok "the console listens on 127.0.0.1:$PORT only"
else
  fail "the listener: $(ss -ltnH "sport = :$PORT")"
fi
status "no token: the API" 401 "$BASE/v1/vms"
status "no token: the page" 401 "$BASE/"
status "no token: the console WebSocket" 401 -H "Connection: Upgrade" -H "Upgrade: websocket" \
  -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" "$BASE/v1/vms/$VM/console"
status "a wrong token" 401 -H "Authorization: Bearer ${TOKEN//?/0}" "$BASE/v1/vms"
status "the token" 200 "${BEARER[@]}" "$BASE/v1/vms"
status "another Host (DNS rebinding)" 403 "${BEARER[@]}" -H "Host: attacker.example:$PORT" "$BASE/v1/vms"
status "another port in Host" 403 "${BEARER[@]}" -H "Host: 127.0.0.1:1$PORT" "$BASE/v1/vms"
status "another Origin" 403 "${BEARER[@]}" -H "Origin: http://attacker.example" -X POST "$BASE/v1/vms/$VM/pause"
WS=(-H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13"
    -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
status "another Origin on the console WebSocket" 403 "${BEARER[@]}" "${WS[@]}" -H "Origin: http://attacker.example" \
  "$BASE/v1/vms/$VM/console"
status "the console's own Origin on its WebSocket" 101 "${BEARER[@]}" "${WS[@]}" -H "Origin: http://localhost:$PORT" \
  --max-time 2 "$BASE/v1/vms/$VM/console"
status "the first visit sets the cookie and goes to /" 303 -c "$WORK/cookies" "$URL"
grep -q "hostvisor-web-$PORT" "$WORK/cookies" && ok "the cookie is set" || fail "no cookie: $(cat "$WORK/cookies")"
grep -q "#HttpOnly_" "$WORK/cookies" && ok "the cookie is HttpOnly" || fail "the cookie is not HttpOnly"
status "the page with the cookie" 200 -b "$WORK/cookies" "$BASE/"
status "xterm.js from Debian's packages" 200 -b "$WORK/cookies" "$BASE/static/xterm.js"
grep -q "Terminal" "$WORK/body" && ok "xterm.js defines Terminal" || fail "xterm.js: $(head -c 200 "$WORK/body")"
head -c 100000 /dev/zero | tr '\0' 'x' >"$WORK/big"
status "a body over the bound" 413 "${BEARER[@]}" --data-binary @"$WORK/big" "$BASE/v1/vms"
status "the token's controls are not on TCP" 403 "${BEARER[@]}" -X DELETE "$BASE/v1/web/token"

# The browser: chromium through WebDriver, against the real page.
if [ -z "$FAKE_VM" ]; then
  for _ in $(seq 240); do hv vm exec $VM -- true >/dev/null 2>&1 && break; sleep 0.5; done
fi
mkdir -p "$(dirname "$SCREENSHOT")"
if timeout 300 python3 "$HERE/web_browser.py" "$URL" "$VM" "$SCREENSHOT" ${FAKE_VM:+--fake-vm}; then
  ok "the browser test (screenshot: $SCREENSHOT)"
else
  fail "the browser test (screenshot: $SCREENSHOT)"
  [ -z "$FAKE_VM" ] && hv vm logs $VM --console | tail -15
fi

# What the page's snapshot and clone buttons made.
curl -s --unix-socket "$SOCK" http://localhost/v1/vms/$VM/snapshots | grep -q '"web-snap"' &&
  ok "the page's snapshot is in the library" || fail "no snapshot web-snap of $VM"
curl -s --unix-socket "$SOCK" http://localhost/v1/vms/$VM-copy | grep -q "\"name\":\"$VM-copy\"" &&
  ok "the page's clone is in the library" || fail "no VM $VM-copy"

# Revoke: what is open with the token (a console WebSocket, the events
# stream) ends, the old token and its cookie fail, and the next `hostvisor
# web` makes a new one.
started=$(date +%s)
curl -s -N -o /dev/null --max-time 60 "${BEARER[@]}" "${WS[@]}" "$BASE/v1/vms/$VM/console" &
ws_pid=$!
curl -s -N -o /dev/null --max-time 60 -b "$WORK/cookies" "$BASE/v1/events" &
events_pid=$!
sleep 1
hv web --revoke >/dev/null
wait $ws_pid $events_pid || true
took=$(($(date +%s) - started))
[ $took -lt 15 ] && ok "a revoke ends the open WebSocket and events stream (${took} s)" ||
  fail "the WebSocket and events stream lasted ${took} s after the revoke"
status "the revoked token" 401 "${BEARER[@]}" "$BASE/v1/vms"
status "the revoked token's cookie" 401 -b "$WORK/cookies" "$BASE/v1/vms"
status "the revoked token's URL" 401 "$URL"
NEW_URL=$(hv web)
NEW_TOKEN=${NEW_URL##*token=}
[ "$NEW_TOKEN" != "$TOKEN" ] && ok "hostvisor web after a revoke makes a new token" || fail "the same token again"
status "the new token" 200 -H "Authorization: Bearer $NEW_TOKEN" "$BASE/v1/vms"
status "the old token still fails" 401 "${BEARER[@]}" "$BASE/v1/vms"

# The console's controls on the unix socket.
out=$(curl -s --unix-socket "$SOCK" http://localhost/v1/web)
[[ "$out" == *"\"port\":$PORT"* && "$out" == *'"token_issued":true'* ]] && ok "GET /v1/web: served on $PORT" ||
  fail "GET /v1/web: $out"
status "POST /v1/web with a bad port" 400 --unix-socket "$SOCK" -d '{"port":"8080"}' http://localhost/v1/web
# A port that is taken leaves the console where it was; a free one moves it.
TAKEN=$(free_port)
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(20)' \
  "$TAKEN" &
holder=$!
sleep 0.3
out=$(hv web --port "$TAKEN" 2>&1) && fail "hostvisor web on a taken port: $out" ||
  { [[ "$out" == *"cannot listen on 127.0.0.1:$TAKEN"* ]] && ok "a taken port is refused: $out" || fail "taken port: $out"; }
kill $holder 2>/dev/null || true
status "the console stays where it was" 200 -H "Authorization: Bearer $NEW_TOKEN" "$BASE/v1/vms"
MOVED=$(free_port)
MOVED_URL=$(hv web --port "$MOVED")
[[ "$MOVED_URL" == "http://127.0.0.1:$MOVED/?token=$NEW_TOKEN" ]] && ok "hostvisor web --port moves the console" ||
  fail "moved: $MOVED_URL"
status "the new port" 200 -H "Authorization: Bearer $NEW_TOKEN" "http://127.0.0.1:$MOVED/v1/vms"
status "the old port is closed" 000 -H "Authorization: Bearer $NEW_TOKEN" "$BASE/v1/vms"

hv vm kill $VM >/dev/null 2>&1 || true
echo "$failures failures"
[ "$failures" = 0 ]
