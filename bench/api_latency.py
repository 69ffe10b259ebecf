#!/usr/bin/env python3
"""Round-trip latency of requests on a unix socket, for bench/api.bench.sh.
  api_latency.py http SOCKET PATH N   GET PATH over one keep-alive HTTP/1.1 connection
  api_latency.py qmp SOCKET N         QEMU's QMP query-status (the peer)
Prints "p50_ms p99_ms"."""
import json
import socket
import sys
import time


def percentiles(samples):
    samples.sort()
    return samples[len(samples) // 2] * 1000, samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000


def read_http(sock, buffer):
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, rest = buffer.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit("unexpected answer: %r" % head[:80])
    return rest[length:]


def http(path, target, n):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    request = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target).encode()
    buffer = b""
    samples = []
    for i in range(n + 20):
        start = time.perf_counter()
        sock.sendall(request)
        buffer = read_http(sock, buffer)
        if i >= 20:  # warm-up excluded
            samples.append(time.perf_counter() - start)
    return percentiles(samples)


def qmp(path, n):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    reader = sock.makefile("rb")
    reader.readline()  # greeting
    sock.sendall(b'{"execute":"qmp_capabilities"}\n')
    reader.readline()
    samples = []
    for i in range(n + 20):
        start = time.perf_counter()
        sock.sendall(b'{"execute":"query-status"}\n')
        while b'"return"' not in reader.readline():
            pass
        if i >= 20:
            samples.append(time.perf_counter() - start)
    return percentiles(samples)


if sys.argv[1] == "http":
    p50, p99 = http(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    p50, p99 = qmp(sys.argv[2], int(sys.argv[3]))
print("%.3f %.3f" % (p50, p99))
