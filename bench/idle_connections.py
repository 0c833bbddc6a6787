#!/usr/bin/env python3
"""How many idle TCP connections can arena-server hold while still answering /healthz?

Usage: bench/idle_connections.py BINARY IDLE MAX_CONNECTIONS [HEADER_TIMEOUT_MS]

Starts BINARY (an arena-server build) on a free port with --max-connections
MAX_CONNECTIONS, opens IDLE connections that never send a byte (from 127.0.0.2,
127.0.0.3, ... so one source address never runs out of ports), then times one ordinary
GET /healthz and counts how many idle connections were still open when it was answered.
A header timeout longer than the run (default 120 s) keeps every idle connection alive,
so the figure is "held and still serving"; a short one shows them being shed.
"""
import http.client
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

binary, n_idle, max_conn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
header_timeout_ms = sys.argv[4] if len(sys.argv) > 4 else "120000"
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
data = tempfile.mkdtemp(prefix="arena-idle-")
env = dict(os.environ, ARENA_LISTEN="127.0.0.1:0", ARENA_DATA_DIR=data,
           ARENA_MAX_CONNECTIONS=max_conn, ARENA_HEADER_TIMEOUT_MS=header_timeout_ms,
           ARENA_LOG="warn")
server = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
host, port = server.stdout.readline().strip().rsplit("//", 1)[1].split(":")
port = int(port)

idle = []
started = time.time()
for i in range(n_idle):
    s = socket.socket()
    s.bind((f"127.0.0.{2 + i // 20000}", 0))
    s.connect((host, port))
    idle.append(s)
opened = time.time() - started
# Wait until the server has accepted them all (its descriptor count stops rising).
deadline, fds = time.time() + 30, -1
while time.time() < deadline:
    now_fds = len(os.listdir(f"/proc/{server.pid}/fd"))
    if now_fds == fds:
        break
    fds = now_fds
    time.sleep(0.2)
rss_kib = int(open(f"/proc/{server.pid}/status").read().split("VmRSS:")[1].split()[0])

asked = time.time()
client = http.client.HTTPConnection(host, port, timeout=30)
client.request("GET", "/healthz")
answer = client.getresponse()
answer.read()
took_ms = (time.time() - asked) * 1000

still_open = 0
for s in idle:
    s.setblocking(False)
    try:
        if s.recv(1) != b"":
            still_open += 1
    except BlockingIOError:
        still_open += 1
    except OSError:
        pass
print(f"idle={n_idle} max_connections={max_conn} header_timeout_ms={header_timeout_ms}: "
      f"opened in {opened:.2f} s; server fds={fds} rss={rss_kib / 1024:.1f} MiB; "
      f"/healthz {answer.status} in {took_ms:.0f} ms; idle connections still open: {still_open}")
server.terminate()
server.wait()
shutil.rmtree(data, ignore_errors=True)
