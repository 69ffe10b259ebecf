#!/usr/bin/env python3
"""A stand-in for `hostvisor run --headless --control PATH ...` that speaks the
per-VM control protocol (docs/vm-control-protocol.md) without booting a guest,
so the daemon's API tests run in seconds. It keeps the protocol's promises the
daemon relies on: the socket appears atomically, `info` answers, pause/resume
change the state, powerdown and quit end the process, snapshot writes a
directory atomically (and quit ends the process), hostfwd/balloon/metrics
answer, and the console echoes what it is sent. Its vsock socket forwards
"CONNECT 1024" to a real hostvisor-agent listening on a unix socket (the
agent then runs commands on this host), so exec and file copies go through
the real agent protocol. The daemon runs it through `hostvisor daemon
--vm-binary`; it is given "run" as its first argument like hostvisor."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

args = sys.argv[1:]
if args and args[0] == "run":
    args = args[1:]


def option(name, default=None):
    values = [args[i + 1] for i in range(len(args) - 1) if args[i] == name]
    return values[-1] if values else default


def options(name):
    return [args[i + 1] for i in range(len(args) - 1) if args[i] == name]


control_path = option("--control")
console_log = option("--console-log")
restore = option("--restore")
vsock = option("--vsock", "")
agent_binary = os.environ.get("FAKE_VM_AGENT")
state = {"state": "running"}
forwards = set()
balloon = {"target_bytes": 0, "actual_bytes": 0, "driver_ready": True, "stats": {}}
consoles = []
lock = threading.Lock()
if not control_path:
    sys.stderr.write("fake_vm: --control is required\n")
    sys.exit(2)
if option("--cpus") == "63":  # how a test makes a VM fail to start
    sys.stderr.write("hostvisor: --cpus 63: too many for a test\n")
    sys.exit(1)
sys.stderr.write("fake_vm: started with %s\n" % " ".join(args))
sys.stderr.flush()

disks = []
for index, spec in enumerate(options("--disk")):
    path = spec.split(",")[0]
    disks.append({"index": index, "path": path, "format": "qcow2", "read_only": False})
if restore:
    # A restore continues in overlays beside the snapshot, as hostvisor's does.
    for index in range(int(open(os.path.join(restore, "disks")).read() or 0)):
        overlay = "%s.run-%d.disk%d.qcow2" % (restore, os.getpid(), index)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", overlay, "1M"], check=True)
        disks.append({"index": index, "path": overlay, "format": "qcow2", "read_only": False})


def console_write(data):
    if console_log:
        with open(console_log, "ab") as log:
            log.write(data)
    with lock:
        for conn in list(consoles):
            try:
                conn.sendall(data)
            except OSError:
                consoles.remove(conn)


def finish(status=0):
    try:
        os.unlink(control_path)
    except OSError:
        pass
    os._exit(status)


def reply(conn, request, result=None, error=None):
    message = {"id": request.get("id")}
    if error:
        message.update(ok=False, error={"code": error[0], "message": error[1]})
    else:
        message.update(ok=True, result=result if result is not None else {})
    conn.sendall((json.dumps(message) + "\n").encode())


def snapshot(request):
    target = request.get("dir")
    if not isinstance(target, str) or not target.startswith("/"):
        return None, ("invalid-argument", "snapshot needs an absolute dir")
    temp = "%s.tmp-%d" % (target, os.getpid())
    os.makedirs(temp)
    with open(os.path.join(temp, "memory"), "wb") as f:
        f.write(b"\0" * 4096)
    with open(os.path.join(temp, "disks"), "w") as f:
        f.write(str(len(disks)))
    with open(os.path.join(temp, "header"), "w") as f:
        f.write("fake snapshot\n")
    os.rename(temp, target)
    return {"dir": target, "bytes": 4096, "millis": 1}, None


def serve(conn):
    buffer = b""
    while True:
        data = conn.recv(65536)
        if not data:
            conn.close()
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            op = request.get("op")
            if op == "info":
                reply(conn, request, {"state": state["state"], "pid": os.getpid(), "accel": option("--accel", "emu"),
                                      "cpus": int(option("--cpus", "1")), "memory_bytes": 512 << 20,
                                      "console": "serial", "headless": True, "nics": [], "disks": disks,
                                      "vsock_socket": vsock.split("uds=")[-1]})
            elif op in ("pause", "resume"):
                state["state"] = "paused" if op == "pause" else "running"
                reply(conn, request, {"state": state["state"]})
            elif op == "reset":
                console_write(b"fake_vm: reset\n")
                reply(conn, request)
            elif op == "powerdown":
                reply(conn, request)
                if os.environ.get("FAKE_VM_IGNORE_POWERDOWN") != "1":
                    threading.Timer(0.2, finish).start()
            elif op == "quit":
                reply(conn, request)
                finish()
            elif op == "snapshot":
                result, error = snapshot(request)
                reply(conn, request, result, error)
                if result and request.get("quit"):
                    finish()
            elif op == "hostfwd-add":
                forwards.add((request.get("proto", "tcp"), request.get("host_port")))
                reply(conn, request)
            elif op == "hostfwd-remove":
                key = (request.get("proto", "tcp"), request.get("host_port"))
                if key not in forwards:
                    reply(conn, request, error=("failed", "no forward of host port %s" % request.get("host_port")))
                else:
                    forwards.discard(key)
                    reply(conn, request)
            elif op == "balloon-set":
                balloon["target_bytes"] = balloon["actual_bytes"] = request.get("bytes", 0)
                reply(conn, request)
            elif op == "balloon":
                reply(conn, request, balloon)
            elif op == "metrics":
                times = os.times()
                reply(conn, request, {"vcpus": [{"exits": 42}], "disks": [], "nics": [],
                                      "memory": {"guest_bytes": 512 << 20, "host_rss_bytes": 1 << 20},
                                      "cpu": {"user_ns": int(times.user * 1e9), "system_ns": int(times.system * 1e9)},
                                      "balloon": balloon})
            elif op == "subscribe":
                reply(conn, request)
            elif op == "console":
                reply(conn, request)
                conn.sendall(b"fake console replay\n")
                with lock:
                    consoles.append(conn)
                while True:
                    data = buffer or conn.recv(4096)
                    buffer = b""
                    if not data:
                        return
                    console_write(data.upper())
            else:
                reply(conn, request, error=("invalid-argument", "unknown op %s" % op))


def serve_vsock(path, agent_socket):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)

    def bridge(conn):
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                return
            line += chunk
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(agent_socket)
        conn.sendall(b"OK 1024\n")

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        def pump_to_agent(a, b):
            # The agent runs on this host: a shutdown or reboot request
            # (the daemon's stop asks the agent to power the guest off) must
            # never reach it. Frames: 4-byte big-endian length (type byte
            # included), the type (1: JSON), the payload.
            pending = b""
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    pending += data
                    while len(pending) >= 4:
                        length = int.from_bytes(pending[:4], "big")
                        if len(pending) < 4 + length:
                            break
                        frame, pending = pending[:4 + length], pending[4 + length:]
                        if length >= 1 and frame[4] == 1:
                            try:
                                op = json.loads(frame[5:]).get("op")
                            except ValueError:
                                op = None
                            if op in ("shutdown", "reboot"):
                                sys.stderr.write("fake_vm: refused the agent's %s (it runs on the host)\n" % op)
                                a.close()
                                b.close()
                                return
                        b.sendall(frame)
            except OSError:
                pass
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump_to_agent(conn, upstream)

    while True:
        conn, _ = server.accept()
        threading.Thread(target=bridge, args=(conn,), daemon=True).start()


signal.signal(signal.SIGTERM, lambda *_: finish())
if vsock and agent_binary:
    uds = vsock.split("uds=")[-1]
    agent_socket = uds + ".agent"
    import ctypes

    def die_with_parent():
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan agent after a kill -9

    # In a user and PID namespace of its own as well: there no reboot(2) can
    # reach the host, whatever it is asked.
    agent = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                              agent_binary, "--listen", "unix:" + agent_socket],
                             stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    for _ in range(200):
        if os.path.exists(agent_socket):
            break
        time.sleep(0.01)
    threading.Thread(target=serve_vsock, args=(uds, agent_socket), daemon=True).start()

temp = "%s.%d.tmp" % (control_path, os.getpid())
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(temp)
os.chmod(temp, 0o600)
server.listen(64)
os.rename(temp, control_path)
console_write(b"fake_vm: booted\n")
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
