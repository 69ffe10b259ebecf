#!/usr/bin/env bash
# A port forward the API adds to a running, sandboxed VM listens: Landlock
# cannot widen a VM's TCP ports once it runs, so the daemon starts its VMs
# with --sandbox-bind any. A real hostvisor (software CPU, the vmgenid test
# kernel, user-mode NAT) must accept a connection on a port nobody named at
# its start. The guest needs no network for this: slirp listens on the host.
# Usage: port_forward_sandbox_test.sh HOSTVISOR GUESTS_DIR
set -euo pipefail
HOSTVISOR=$1
GUESTS=$2
. "$(dirname "$0")/library_env.sh" hv-forward-sandbox
. "$(dirname "$0")/api_client.sh"
# A free port, chosen after the VM started: no --sandbox-bind could name it.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

expect_status "create" 201 "$(api POST /v1/vms "{\"name\":\"fwd\",\"kernel\":\"$GUESTS/vmgenid.elf64\",\"memory\":\"64M\",\"accel\":\"emu\",\"data_disk_bytes\":0,\"nets\":[\"user\"]}")"
expect_status "start" 200 "$(api POST /v1/vms/fwd/start)"
for _ in $(seq 300); do grep -q "vmgenid ready" "$LIB/vms/fwd/logs/console.log" 2>/dev/null && break; sleep 0.1; done
port=$(free_port)
expect_status "add a forward on port $port to the running VM" 201 \
  "$(api POST /v1/vms/fwd/port-forwards "{\"host_addr\":\"127.0.0.1\",\"host_port\":$port,\"guest_port\":80}")"
if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()' "$port"; then
  echo "ok   the sandboxed VM listens on port $port"
else
  fail "nothing listens on port $port"
fi
refusal="may listen only on the TCP ports"
grep -q "$refusal" "$LIB/vms/fwd/logs/hostvisor.log" 2>/dev/null && fail "the VM refused the bind: $(grep "$refusal" "$LIB/vms/fwd/logs/hostvisor.log")"
expect_status "kill" 200 "$(api POST /v1/vms/fwd/kill)"
[ "$failures" -eq 0 ] || { echo "$failures failed"; tail -20 "$LIB/vms/fwd/logs/hostvisor.log"; exit 1; }
