#!/usr/bin/env python3
"""origin.py - a tiny HTTP/1.1 keep-alive origin for the HTTP engine's tests (stdlib only).

Listens on 127.0.0.1 (port 0 = any free one) and writes the port to --port-file once ready.

  GET|HEAD /obj/N?size=S     200, S bytes (default 1024) of the pattern byte[j] = j % 251
           [&slowdown=P]     answer 503 SlowDown with probability P instead (seeded: --seed)
  PUT /obj/N                 200 with an ETag when the body is the pattern, else 400 BadDigest
  /404 /500 /503             404 NoSuchKey, 500 InternalError, 503 SlowDown (S3 XML bodies)
  /reqtimeout                400 RequestTimeout
  /slow?size=S&chunk=C&interval_ms=I   headers, then C bytes every I ms (default 4096 / 100)
  /stall?size=S&after=A      headers (Content-Length S), A bytes (default 0), then silence
                             until the client goes away (at most 300 s)
  /reset?after=A             (A = -1, default: before any response) headers and A bytes,
                             then a TCP reset (SO_LINGER 0)
  /__stats                   JSON: connection and request counters

--mode silent: a plain TCP listener that accepts and never says anything (a TLS handshake
that never completes). --mode blackhole: a listener with a backlog of 0 that never accepts:
once its queue is full, connects hang in SYN_SENT (a connect timeout, a cancel mid-connect). Request bodies are always read in full before answering, so a
connection stays usable after an error answer. Stop it with SIGTERM.
"""
import argparse
import http.server
import json
import os
import random
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

PATTERN = bytes(range(251))
lock = threading.Lock()
counters = {"conns_total": 0, "conns_now": 0, "conns_max": 0, "requests": 0, "puts_ok": 0,
            "puts_bad": 0}
rng = random.Random(1)


def pattern(off, n):
    start = off % 251
    reps = (start + n) // 251 + 1
    return (PATTERN * reps)[start:start + n]


def xml_error(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message><RequestId>origin</RequestId></Error>\n'
            % (code, message)).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("origin: " + (fmt % args) + "\n")

    def setup(self):
        super().setup()
        with lock:
            counters["conns_total"] += 1
            counters["conns_now"] += 1
            counters["conns_max"] = max(counters["conns_max"], counters["conns_now"])

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with lock:
            counters["conns_now"] -= 1

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        chunks = []
        while n > 0:
            b = self.rfile.read(min(n, 1 << 16))
            if not b:
                break
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def answer(self, status, body=b"", ctype="application/xml", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reset(self):
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def do_any(self):
        with lock:
            counters["requests"] += 1
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        body = self.read_body()
        size = int(q.get("size", 1024))

        if path == "/__stats":
            with lock:
                data = json.dumps(counters).encode()
            return self.answer(200, data, "application/json")
        if path == "/404":
            return self.answer(404, xml_error("NoSuchKey", "The specified key does not exist."))
        if path == "/500":
            return self.answer(500, xml_error("InternalError", "We encountered an internal error."))
        if path == "/503":
            return self.answer(503, xml_error("SlowDown", "Please reduce your request rate."))
        if path == "/reqtimeout":
            return self.answer(400, xml_error("RequestTimeout", "Your socket connection timed out."))
        if path == "/reset":
            after = int(q.get("after", -1))
            if after >= 0:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write(pattern(0, min(after, size)))
            return self.reset()
        if path == "/slow":
            chunk = int(q.get("chunk", 4096))
            interval = int(q.get("interval_ms", 100)) / 1000.0
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            off = 0
            while off < size:
                n = min(chunk, size - off)
                self.wfile.write(pattern(off, n))
                self.wfile.flush()
                off += n
                if off < size:
                    time.sleep(interval)
            return
        if path == "/stall":
            after = int(q.get("after", 0))
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(pattern(0, min(after, size)))
            self.wfile.flush()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                r, _, _ = select.select([self.connection], [], [], 1.0)
                if r:
                    try:
                        if not self.connection.recv(4096):
                            break
                    except OSError:
                        break
            self.close_connection = True
            return
        if path.startswith("/obj/"):
            p = float(q.get("slowdown", 0))
            if p > 0:
                with lock:
                    hit = rng.random() < p
                if hit:
                    return self.answer(503, xml_error("SlowDown", "Please reduce your request rate."))
            if self.command in ("GET", "HEAD"):
                return self.answer(200, pattern(0, size), "application/octet-stream",
                                   {"ETag": '"obj"'})
            if self.command == "PUT":
                if body == pattern(0, len(body)):
                    with lock:
                        counters["puts_ok"] += 1
                    return self.answer(200, b"", extra={"ETag": '"put-%d"' % len(body)})
                with lock:
                    counters["puts_bad"] += 1
                return self.answer(400, xml_error("BadDigest", "body is not the pattern"))
            if self.command == "DELETE":
                return self.answer(204)
        return self.answer(404, xml_error("NoSuchKey", "no such path: " + path))

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = False  # two servers must never share a port

    def handle_error(self, request, client_address):
        # a client that goes away mid-answer (cancel, timeout) is part of the tests
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def silent(sock):
    """Accept and hold connections, never answering."""
    held = []
    while True:
        try:
            c, _ = sock.accept()
        except OSError:
            return
        with lock:
            counters["conns_total"] += 1
        held.append(c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-range", default=os.environ.get("OBJFS_TEST_PORT_RANGE", ""),
                    help="A-B: first free port in the range (default: any free port)")
    ap.add_argument("--mode", choices=["http", "silent", "blackhole"], default="http")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    rng.seed(a.seed)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    ports = [a.port]
    if a.port_range and not a.port:
        lo, hi = (int(x) for x in a.port_range.split("-"))
        ports = list(range(lo, hi + 1))
    for candidate in ports:
        try:
            if a.mode in ("silent", "blackhole"):
                sock = socket.socket()
                sock.bind(("127.0.0.1", candidate))
                sock.listen(64 if a.mode == "silent" else 0)
                port = sock.getsockname()[1]
                run = (lambda: silent(sock)) if a.mode == "silent" else (lambda: signal.pause())
            else:
                srv = Server(("127.0.0.1", candidate), Handler)
                srv.verbose = a.verbose
                port = srv.server_address[1]
                run = srv.serve_forever
            break
        except OSError:
            if candidate == ports[-1]:
                raise
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, a.port_file)
    run()


if __name__ == "__main__":
    main()
