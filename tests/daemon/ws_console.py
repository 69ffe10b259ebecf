#!/usr/bin/env python3
"""A minimal WebSocket client (RFC 6455) over the API's unix socket, for the
console test: opens /v1/vms/NAME/console, sends TEXT as one binary message,
and prints everything the console sends until EXPECT has been seen (exit 0)
or TIMEOUT seconds pass (exit 1). Usage: ws_console.py SOCKET NAME TEXT EXPECT"""

import base64
import os
import socket
import struct
import sys
import time

path, name, text, expect = sys.argv[1:5]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(("GET /v1/vms/%s/console HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (name, key)).encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = sock.recv(1)
    if not chunk:
        sys.exit("closed during the handshake: %r" % head)
    head += chunk
status = head.split(b"\r\n")[0]
if b" 101 " not in status:
    sys.stdout.write(head.decode(errors="replace") + sock.recv(65536).decode(errors="replace"))
    sys.exit(2)

payload = text.encode()
mask = os.urandom(4)
frame = bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
sock.sendall(frame)

received = b""
deadline = time.time() + 10
sock.settimeout(1)
buffer = b""
while time.time() < deadline and expect.encode() not in received:
    try:
        data = sock.recv(65536)
    except socket.timeout:
        continue
    if not data:
        break
    buffer += data
    while len(buffer) >= 2:
        length = buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                break
            length = struct.unpack(">H", buffer[2:4])[0]
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length = struct.unpack(">Q", buffer[2:10])[0]
            offset = 10
        if len(buffer) < offset + length:
            break
        received += buffer[offset:offset + length]
        buffer = buffer[offset + length:]
sys.stdout.write(received.decode(errors="replace"))
sys.exit(0 if expect.encode() in received else 1)
