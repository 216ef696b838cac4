#!/usr/bin/env python3
"""faultproxy.py - a fault-injecting HTTP/1.1 proxy for the integration tests (stdlib only).

Sits between a client (objfs) and an S3 server on 127.0.0.1, forwards each request on its own
upstream connection per client connection, counts client connections precisely and injects
faults on request. Owns: the listening socket, one thread per client connection (each with at
most one upstream connection), the control HTTP server and the statistics. Locking: one lock
(Proxy.lock) guards the statistics, the registry of open client connections and the fault
modes; it is never held across network I/O except the zero-timeout poll in _prune_locked.

usage: faultproxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT --port-file F
                     [--control 127.0.0.1:0] [--parent-pid PID] [--max-conns N] [-v]
The port file gets one line "LISTEN_PORT CONTROL_PORT", written atomically once both listen.

Counting: a client connection is counted from accept until the proxy closes it or the client's
FIN/RST is seen. The peer's close is noticed at every accept and every /stats (poll with
POLLRDHUP), so a client that closes one connection and opens another is never counted twice.
Connections dropped by the `refuse` mode count in total_conns but never as concurrent.

Control API (HTTP on the control port):
  GET  /stats   JSON {current_conns, max_concurrent_conns, total_conns, current_requests,
                max_concurrent_requests, held_requests, requests_total,
                requests{GET,HEAD,PUT,POST,DELETE,LIST,...}, responses{"200":n,...},
                injected{mode:n}, refused_conns, upstream_errors, bytes_from_client,
                bytes_to_client}
                LIST = a GET with list-type=, prefix= or delimiter=, a GET of "/" or of a bucket
                root without other sub-resources (ListObjects, ListMultipartUploads,
                ListObjectVersions), or a GET with uploadId= (ListParts). Path-style URLs only.
  POST /reset   zero the counters; max_concurrent_* restart from the current values
  GET  /mode    the active fault modes
  POST /mode    replace the active fault modes with the JSON object given ({} clears them):
                {"MODE": {options}} or {"MODE": [{options}, {options}]}; "seed": N reseeds.
    Options every mode takes: p (probability 0..1, default 1), method ("PUT" or a list),
    kind (as in requests, e.g. "LIST"), path_re (regex searched in the request target),
    skip (let the first N matching requests through), count (inject at most N times).
    Modes and their own options:
      slowdown       answer 503 SlowDown (S3 XML body) without forwarding
      error500       answer 500 InternalError without forwarding
      notfound       answer 404 NoSuchKey without forwarding
      wrong_region   answer as S3 does for a bucket in another region, without forwarding:
                     status 301 (default: PermanentRedirect, <Endpoint> in the body) or 400
                     (AuthorizationHeaderMalformed with <Region> in the body); region (default
                     "eu-west-1"); header (default true): send x-amz-bucket-region
      reset          RST the client connection (SO_LINGER 0 + close); when: "before" (default:
                     the server never sees the request), "after" (the server completed it, the
                     client gets no response), "mid" (after the response headers and
                     after_bytes of the body, default half)
      stall          stop sending for stall_s seconds (absent or null: until the client
                     closes), keeping the socket open; phase: "body" (default: after the
                     headers and after_bytes of the body, default half; a response without
                     a body stalls before its headers), "response" (the server has answered,
                     nothing reaches the client), "request" (before forwarding)
      no100          for "Expect: 100-continue" requests never relay the server's interim
                     100 to the client, which must time out its wait and send the body anyway
                     (headers are forwarded unchanged: a client may have signed Expect)
      malformed_xml  corrupt XML response bodies; how: "truncate" (default) or "garbage"
      corrupt_body   flip the bits of one byte of a request body (Content-Length framed) as it
                     is forwarded, at after_bytes (default: the middle): the server gets the
                     request whole but with other bytes than the client sent
      require_md5    answer 400 InvalidRequest, as AWS does for a part upload to a bucket with
                     Object Lock, to a request without Content-MD5 (not forwarded)
      notfound, slowdown, error500 read and discard the request body first (with Expect:
                     100-continue they answer at once and close the connection, as S3 does)
      refuse         close each new connection at once (rst: true (default) resets it)
      delay_ms       hold each matching request ms milliseconds before forwarding;
                     {"delay_ms": 200} is short for {"delay_ms": {"ms": 200}}
      hold           hold each matching request before forwarding until the next POST /mode
                     (or max_s seconds, default 120, or the client closes); stats
                     held_requests counts the requests waiting: a test can wait for N held
                     requests, check the counters, then release them with POST /mode
    Mode precedence per request: delay_ms and hold (add), then the first of reset(before), slowdown,
    error500, notfound, require_md5, wrong_region, stall(request) that fires; if none, no100 (adds) and the first of
    reset(after|mid), stall(response|body), malformed_xml that fires. corrupt_body adds to
    whatever else fires once the request is forwarded.
An upstream that cannot be reached makes the proxy reset the client connection
(upstream_errors counts these). Exits on SIGTERM/SIGINT, when --parent-pid is gone, or after
--max-lifetime seconds.
"""

import argparse
import json
import os
import random
import resource
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_LINE = 65536
MAX_HEADERS = 256
IO_CHUNK = 256 * 1024
XML_BUFFER_MAX = 16 << 20
KINDS = ("GET", "HEAD", "PUT", "POST", "DELETE", "LIST")
LIST_PARAMS = {"marker", "max-keys", "encoding-type", "continuation-token", "start-after",
               "fetch-owner", "uploads", "versions", "key-marker", "upload-id-marker",
               "version-id-marker", "max-uploads", "list-type", "prefix", "delimiter"}
PRE_MODES = ("reset", "slowdown", "error500", "notfound", "require_md5", "wrong_region", "stall")
POST_MODES = ("reset", "stall", "malformed_xml")
COMMON_OPTS = {"p", "method", "kind", "path_re", "skip", "count"}
MODE_OPTS = {
    "slowdown": set(), "error500": set(), "notfound": set(), "no100": set(), "require_md5": set(),
    "wrong_region": {"status", "region", "header"},
    "reset": {"when", "after_bytes"},
    "stall": {"phase", "stall_s", "after_bytes"},
    "malformed_xml": {"how"},
    "corrupt_body": {"after_bytes"},
    "refuse": {"rst"},
    "delay_ms": {"ms"},
    "hold": {"max_s"},
}
POLL_CLOSED = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


class ProtocolError(Exception):
    pass


class ClientGone(Exception):
    pass


def log(msg):
    sys.stderr.write("faultproxy %s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Reader:
    """Buffered reads from a socket: lines, exact counts, pieces."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(IO_CHUNK)
        if not data:
            return False
        self.buf += data
        return True

    def pending(self):
        return len(self.buf)

    def readline(self):
        """One line with its terminator; b'' at a clean EOF before any byte."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            if len(self.buf) > MAX_LINE:
                raise ProtocolError("line longer than %d bytes" % MAX_LINE)
            if not self._fill():
                if self.buf:
                    raise ProtocolError("connection closed in the middle of a line")
                return b""

    def read_some(self, n):
        """Up to n bytes (at least 1); b'' at EOF."""
        if not self.buf:
            if n >= IO_CHUNK:
                return self.sock.recv(IO_CHUNK)
            if not self._fill():
                return b""
        k = min(n, len(self.buf))
        out = bytes(self.buf[:k])
        del self.buf[:k]
        return out


class Message:
    """A request or response head: start line fields and ordered headers."""

    def __init__(self, first, headers):
        self.first = first          # the three start-line fields
        self.headers = headers      # [(name, value)]

    def get(self, name):
        name = name.lower()
        val = None
        for k, v in self.headers:
            if k.lower() == name:
                val = v
        return val

    def has_token(self, name, token):
        v = self.get(name)
        return v is not None and token in [t.strip().lower() for t in v.split(",")]

    def encode(self):
        out = [" ".join(self.first)]
        out += ["%s: %s" % (k, v) for k, v in self.headers]
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def read_head(reader, is_request):
    """The next message head from reader, or None at a clean EOF before it."""
    line = reader.readline()
    while is_request and line in (b"\r\n", b"\n"):
        line = reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if is_request and (len(parts) != 3 or not parts[2].startswith("HTTP/")):
        raise ProtocolError("bad request line %r" % line[:200])
    if not is_request:
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % line[:200])
        while len(parts) < 3:
            parts.append("")
    headers = []
    while True:
        h = reader.readline()
        if not h:
            raise ProtocolError("connection closed inside the headers")
        if h in (b"\r\n", b"\n"):
            break
        if len(headers) >= MAX_HEADERS:
            raise ProtocolError("more than %d headers" % MAX_HEADERS)
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError("bad header line %r" % h[:200])
        headers.append((name.strip(), value.strip()))
    return Message(parts, headers)


def framing(msg, response_to=None):
    """('none'|'length'|'chunked'|'eof', length) for msg's body; response_to = request method."""
    if response_to is not None:
        status = int(msg.first[1])
        if response_to == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return ("none", 0)
    te = msg.get("transfer-encoding")
    if te and "chunked" in te.lower():
        return ("chunked", None)
    cl = msg.get("content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise ProtocolError("bad content-length %r" % cl)
        if n < 0:
            raise ProtocolError("negative content-length")
        return ("length", n) if n else ("none", 0)
    return ("eof", None) if response_to is not None else ("none", 0)


def iter_body(reader, frame, raw=True):
    """Yield the body's bytes: as on the wire (raw) or de-chunked."""
    kind, n = frame
    if kind == "none":
        return
    if kind == "length":
        while n > 0:
            piece = reader.read_some(min(n, IO_CHUNK))
            if not piece:
                raise ProtocolError("connection closed %d bytes before the end of the body" % n)
            n -= len(piece)
            yield piece
        return
    if kind == "eof":
        while True:
            piece = reader.read_some(IO_CHUNK)
            if not piece:
                return
            yield piece
    while True:  # chunked
        line = reader.readline()
        if not line:
            raise ProtocolError("connection closed before a chunk header")
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk header %r" % line[:100])
        if raw:
            yield line
        if size == 0:
            while True:
                t = reader.readline()
                if not t:
                    raise ProtocolError("connection closed in the chunked trailer")
                if raw:
                    yield t
                if t in (b"\r\n", b"\n"):
                    return
        while size > 0:
            piece = reader.read_some(min(size, IO_CHUNK))
            if not piece:
                raise ProtocolError("connection closed inside a chunk")
            size -= len(piece)
            yield piece
        crlf = reader.readline()
        if raw:
            yield crlf


def classify(method, target):
    """The request kind counted in stats: the method, or LIST for listings."""
    if method != "GET":
        return method
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    params = {urllib.parse.unquote(p.partition("=")[0]) for p in query.split("&") if p}
    if params & {"list-type", "prefix", "delimiter", "uploadId"}:
        return "LIST"
    segs = [s for s in path.split("/") if s]
    if len(segs) <= 1 and params <= LIST_PARAMS:
        return "LIST"
    return "GET"


def s3_error(code, message, resource):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>' %
            (code, message, resource.replace("&", "&amp;").replace("<", "&lt;"))).encode()


INJECTED = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "error500": (500, "Internal Server Error", "InternalError",
                 "We encountered an internal error. Please try again."),
    "notfound": (404, "Not Found", "NoSuchKey", "The specified key does not exist."),
    "require_md5": (400, "Bad Request", "InvalidRequest",
                    "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Part "
                    "requests with Object Lock parameters"),
}


def wrong_region_answer(target, cfg):
    """(status, reason, body, extra headers) of S3's answer for a bucket in cfg's region."""
    path = target.split("://", 1)[1].partition("/")[2] if "://" in target else target[1:]
    bucket = path.partition("?")[0].partition("/")[0] or "bucket"
    region = cfg["region"]
    if cfg["status"] == 301:
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PermanentRedirect</Code>'
                '<Message>The bucket you are attempting to access must be addressed using the '
                'specified endpoint. Please send all future requests to this endpoint.</Message>'
                '<Endpoint>%s.s3.%s.amazonaws.com</Endpoint><Bucket>%s</Bucket>'
                '<RequestId>faultproxy</RequestId></Error>' % (bucket, region, bucket))
        status, reason = 301, "Moved Permanently"
    else:
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AuthorizationHeaderMalformed'
                '</Code><Message>The authorization header is malformed; the region is wrong; '
                "expecting '%s'</Message><Region>%s</Region><RequestId>faultproxy</RequestId>"
                '</Error>' % (region, region))
        status, reason = 400, "Bad Request"
    extra = ["x-amz-bucket-region: %s" % region] if cfg["header"] else []
    return status, reason, body.encode(), extra


def validate_modes(doc):
    """Normalise a /mode document to {mode: [cfg, ...]}; raise ValueError when invalid."""
    if not isinstance(doc, dict):
        raise ValueError("the mode document must be a JSON object")
    out = {}
    for name, val in doc.items():
        if name == "seed":
            continue
        if name not in MODE_OPTS:
            raise ValueError("unknown mode '%s' (known: %s)" % (name, ", ".join(sorted(MODE_OPTS))))
        if name == "delay_ms" and isinstance(val, (int, float)):
            val = {"ms": val}
        cfgs = val if isinstance(val, list) else [val]
        norm = []
        for cfg in cfgs:
            if not isinstance(cfg, dict):
                raise ValueError("mode '%s' needs an object of options" % name)
            bad = set(cfg) - COMMON_OPTS - MODE_OPTS[name]
            if bad:
                raise ValueError("mode '%s' has unknown options %s" % (name, sorted(bad)))
            c = dict(cfg)
            c["p"] = float(c.get("p", 1.0))
            if not 0.0 <= c["p"] <= 1.0:
                raise ValueError("mode '%s': p must be in 0..1" % name)
            for key in ("method", "kind"):
                v = c.get(key)
                if v is not None:
                    c[key] = [v.upper()] if isinstance(v, str) else [str(x).upper() for x in v]
            if c.get("path_re") is not None:
                re.compile(c["path_re"])
            for key in ("skip", "count", "after_bytes"):
                if c.get(key) is not None:
                    c[key] = int(c[key])
            if name == "reset" and c.setdefault("when", "before") not in ("before", "after", "mid"):
                raise ValueError("reset: when must be before, after or mid")
            if name == "stall":
                if c.setdefault("phase", "body") not in ("request", "response", "body"):
                    raise ValueError("stall: phase must be request, response or body")
                if c.get("stall_s") is not None:
                    c["stall_s"] = float(c["stall_s"])
                    if c["stall_s"] < 0:
                        c["stall_s"] = None
            if name == "malformed_xml" and \
                    c.setdefault("how", "truncate") not in ("truncate", "garbage"):
                raise ValueError("malformed_xml: how must be truncate or garbage")
            if name == "delay_ms":
                c["ms"] = float(c.get("ms", 0))
                if not 0 <= c["ms"] <= 600000:
                    raise ValueError("delay_ms: ms must be in 0..600000")
            if name == "refuse":
                c["rst"] = bool(c.get("rst", True))
            if name == "wrong_region":
                c["status"] = int(c.get("status", 301))
                if c["status"] not in (301, 400):
                    raise ValueError("wrong_region: status must be 301 or 400")
                c["region"] = str(c.get("region", "eu-west-1"))
                if not re.match(r"^[a-z0-9-]+$", c["region"]):
                    raise ValueError("wrong_region: region must be like eu-west-1")
                c["header"] = bool(c.get("header", True))
            if name == "hold":
                c["max_s"] = float(c.get("max_s", 120))
                if not 0 < c["max_s"] <= 3600:
                    raise ValueError("hold: max_s must be in (0, 3600]")
            c["_matched"] = 0
            c["_injected"] = 0
            norm.append(c)
        out[name] = norm
    return out


def public_modes(modes):
    def one(c):
        out = {k: v for k, v in c.items() if not k.startswith("_")}
        out["injected"] = c["_injected"]
        return out
    return {name: [one(c) for c in cfgs] for name, cfgs in modes.items()}


def set_linger_rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class ClientConn:
    def __init__(self, sock, cid):
        self.sock = sock
        self.id = cid
        self.counted = True     # still counted in current_conns
        self.closed = False


class Proxy:
    def __init__(self, args):
        self.args = args
        host, port = args.upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.lock = threading.Lock()
        self.mode_changed = threading.Condition(self.lock)  # signalled by set_modes
        self.mode_generation = 0
        self.conns = {}
        self.next_id = 0
        self.modes = {}
        self.rng = random.Random(args.seed)
        self.stopping = False
        self._zero_locked()
        self.current_conns = 0
        self.current_requests = 0
        self.held_requests = 0
        self.max_concurrent_conns = 0
        self.max_concurrent_requests = 0

    # ---- statistics (all under self.lock)
    def _zero_locked(self):
        self.total_conns = 0
        self.requests = {k: 0 for k in KINDS}
        self.requests_total = 0
        self.responses = {}
        self.injected = {}
        self.refused_conns = 0
        self.upstream_errors = 0
        self.bytes_from_client = 0
        self.bytes_to_client = 0

    def _prune_locked(self):
        """Uncount connections whose client has closed (FIN or RST seen)."""
        live = [c for c in self.conns.values() if c.counted]
        if not live:
            return
        p = select.poll()
        byfd = {}
        for c in live:
            fd = c.sock.fileno()
            if fd >= 0:
                byfd[fd] = c
                p.register(fd, POLL_CLOSED)
        for fd, ev in p.poll(0):
            if ev & POLL_CLOSED and fd in byfd:
                byfd[fd].counted = False
                self.current_conns -= 1

    def stats(self):
        with self.lock:
            self._prune_locked()
            return {
                "current_conns": self.current_conns,
                "max_concurrent_conns": self.max_concurrent_conns,
                "total_conns": self.total_conns,
                "current_requests": self.current_requests,
                "max_concurrent_requests": self.max_concurrent_requests,
                "held_requests": self.held_requests,
                "requests_total": self.requests_total,
                "requests": dict(self.requests),
                "responses": dict(self.responses),
                "injected": dict(self.injected),
                "refused_conns": self.refused_conns,
                "upstream_errors": self.upstream_errors,
                "bytes_from_client": self.bytes_from_client,
                "bytes_to_client": self.bytes_to_client,
            }

    def reset_stats(self):
        with self.lock:
            self._prune_locked()
            self._zero_locked()
            self.max_concurrent_conns = self.current_conns
            self.max_concurrent_requests = self.current_requests
            for cfgs in self.modes.values():
                for c in cfgs:
                    c["_matched"] = 0
                    c["_injected"] = 0

    def set_modes(self, doc):
        modes = validate_modes(doc)
        with self.lock:
            if "seed" in doc:
                self.rng.seed(doc["seed"])
            self.modes = modes
            self.mode_generation += 1
            self.mode_changed.notify_all()
            return public_modes(self.modes)

    def get_modes(self):
        with self.lock:
            return public_modes(self.modes)

    def count(self, field, key, n=1):
        with self.lock:
            d = getattr(self, field)
            d[key] = d.get(key, 0) + n

    def add_bytes(self, field, n):
        with self.lock:
            setattr(self, field, getattr(self, field) + n)

    def _fire_locked(self, name, cfg, method, kind, target):
        if cfg.get("method") and method not in cfg["method"]:
            return False
        if cfg.get("kind") and kind not in cfg["kind"]:
            return False
        if cfg.get("path_re") and not re.search(cfg["path_re"], target):
            return False
        cfg["_matched"] += 1
        if cfg.get("skip") and cfg["_matched"] <= cfg["skip"]:
            return False
        if cfg.get("count") is not None and cfg["_injected"] >= cfg["count"]:
            return False
        if cfg["p"] < 1.0 and self.rng.random() >= cfg["p"]:
            return False
        cfg["_injected"] += 1
        self.injected[name] = self.injected.get(name, 0) + 1
        return True

    def pick(self, names, method, kind, target, phase_ok):
        """The first (name, cfg) among names whose config fires, or (None, None)."""
        with self.lock:
            for name in names:
                for cfg in self.modes.get(name, ()):
                    if phase_ok(name, cfg) and self._fire_locked(name, cfg, method, kind, target):
                        return name, cfg
        return None, None

    def hold(self, cfg, handler):
        """Wait until the modes change, cfg's max_s passes or the client closes (False)."""
        end = time.monotonic() + cfg["max_s"]
        with self.lock:
            gen = self.mode_generation
            self.held_requests += 1
        try:
            while True:
                with self.lock:
                    if self.mode_generation != gen or self.stopping:
                        return True
                    left = end - time.monotonic()
                    if left <= 0:
                        return True
                    self.mode_changed.wait(min(left, 0.2))
                if handler.client_closed(0.001):
                    return False
        finally:
            with self.lock:
                self.held_requests -= 1

    # ---- connections
    def register(self, sock):
        """Count a new client connection; None when it must be dropped."""
        with self.lock:
            self._prune_locked()
            self.total_conns += 1
            for cfg in self.modes.get("refuse", ()):
                if self._fire_locked("refuse", cfg, "", "", ""):
                    self.refused_conns += 1
                    if cfg["rst"]:
                        set_linger_rst(sock)
                    sock.close()
                    return None
            if len(self.conns) >= self.args.max_conns:
                self.refused_conns += 1
                set_linger_rst(sock)
                sock.close()
                return None
            self.next_id += 1
            conn = ClientConn(sock, self.next_id)
            self.conns[conn.id] = conn
            self.current_conns += 1
            self.max_concurrent_conns = max(self.max_concurrent_conns, self.current_conns)
            return conn

    def close_conn(self, conn, rst=False):
        with self.lock:
            if conn.closed:
                return
            conn.closed = True
            self.conns.pop(conn.id, None)
            if conn.counted:
                conn.counted = False
                self.current_conns -= 1
            if rst:
                set_linger_rst(conn.sock)
            try:
                conn.sock.close()
            except OSError:
                pass

    def request_begin(self, kind):
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.requests_total += 1
            self.current_requests += 1
            self.max_concurrent_requests = max(self.max_concurrent_requests, self.current_requests)

    def request_end(self):
        with self.lock:
            self.current_requests -= 1

    def serve_forever(self, lsock):
        while not self.stopping:
            try:
                sock, _ = lsock.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.05)
                continue
            conn = self.register(sock)
            if conn is None:
                continue
            t = threading.Thread(target=Handler(self, conn).run, daemon=True)
            try:
                t.start()
            except RuntimeError:
                self.close_conn(conn, rst=True)


class Handler:
    """One client connection: requests in order, one upstream connection at a time."""

    def __init__(self, proxy, conn):
        self.proxy = proxy
        self.conn = conn
        self.csock = conn.sock
        self.creader = Reader(self.csock)
        self.up = None
        self.ureader = None
        self.verbose = proxy.args.verbose

    def run(self):
        rst = False
        try:
            self.csock.settimeout(self.proxy.args.idle_timeout)
            self.csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.proxy.stopping:
                req = read_head(self.creader, True)
                if req is None:
                    break
                keep = self.serve(req)
                if keep == "rst":
                    rst = True
                    break
                if not keep:
                    break
        except (ClientGone, ConnectionError, socket.timeout, TimeoutError):
            pass
        except ProtocolError as e:
            log("conn %d: %s" % (self.conn.id, e))
        except OSError as e:
            log("conn %d: %s" % (self.conn.id, e))
        except Exception as e:  # a bug here must not kill the proxy
            log("conn %d: internal error %r" % (self.conn.id, e))
        finally:
            self.close_upstream()
            self.proxy.close_conn(self.conn, rst=rst)

    # ---- client side helpers
    def send_client(self, data):
        if data:
            try:
                self.csock.sendall(data)
            except OSError:
                raise ClientGone()
            self.proxy.add_bytes("bytes_to_client", len(data))

    def client_closed(self, timeout):
        """Wait up to timeout (None: forever) for the client to close; True if it did."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.proxy.stopping:
            left = 0.2 if end is None else min(0.2, end - time.monotonic())
            if left <= 0:
                return False
            p = select.poll()
            p.register(self.csock.fileno(), POLL_CLOSED)
            if p.poll(left * 1000):
                return True
        return True

    def lingering_close_client(self):
        """Half-close and drain, so the client reads our answer before the connection goes."""
        try:
            self.csock.shutdown(socket.SHUT_WR)
            self.csock.settimeout(2)
            end = time.monotonic() + 2
            while time.monotonic() < end and self.csock.recv(IO_CHUNK):
                pass
        except OSError:
            pass

    def discard_request_body(self, req):
        for piece in iter_body(self.creader, framing(req), raw=True):
            self.proxy.add_bytes("bytes_from_client", len(piece))

    def answer(self, req, mode, cfg=None):
        """An injected S3 error response; returns keep-alive."""
        extra = []
        if mode == "wrong_region":
            status, reason, body, extra = wrong_region_answer(req.first[1], cfg)
        else:
            status, reason, code, msg = INJECTED[mode]
            body = s3_error(code, msg, req.first[1].partition("?")[0])
        expect = req.has_token("expect", "100-continue") and framing(req)[0] != "none"
        if not expect:
            self.discard_request_body(req)
        close = expect or req.has_token("connection", "close")
        head = ["HTTP/1.1 %d %s" % (status, reason), "Content-Type: application/xml",
                "Content-Length: %d" % len(body), "x-amz-request-id: faultproxy",
                "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())] + extra
        if close:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode()
        if req.first[0] != "HEAD":
            data += body
        self.send_client(data)
        self.proxy.count("responses", str(status))
        if close:
            self.lingering_close_client()
            return False
        return True

    # ---- upstream side helpers
    def close_upstream(self):
        if self.up is not None:
            try:
                self.up.close()
            except OSError:
                pass
        self.up = None
        self.ureader = None

    def upstream_usable(self):
        if self.up is None:
            return False
        if self.ureader.pending():
            return False
        p = select.poll()
        p.register(self.up.fileno(), select.POLLIN | POLL_CLOSED)
        return not p.poll(0)

    def connect_upstream(self):
        if self.upstream_usable():
            return True
        self.close_upstream()
        try:
            s = socket.create_connection(self.proxy.upstream, timeout=10)
        except OSError as e:
            self.proxy.add_bytes("upstream_errors", 1)
            log("conn %d: upstream %s:%d unreachable: %s" %
                (self.conn.id, self.proxy.upstream[0], self.proxy.upstream[1], e))
            return False
        s.settimeout(self.proxy.args.upstream_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.up = s
        self.ureader = Reader(s)
        return True

    def send_upstream(self, data):
        try:
            self.up.sendall(data)
        except OSError as e:
            raise ProtocolError("upstream send failed: %s" % e)

    def relay_request_body(self, req, corrupt_at=None):
        pos = 0
        for piece in iter_body(self.creader, framing(req), raw=True):
            self.proxy.add_bytes("bytes_from_client", len(piece))
            if corrupt_at is not None and pos <= corrupt_at < pos + len(piece):
                b = bytearray(piece)
                b[corrupt_at - pos] ^= 0xff
                piece = bytes(b)
            pos += len(piece)
            self.send_upstream(piece)

    def read_response(self, method, drop_100=True):
        """The next final response head from upstream (interim 1xx dropped)."""
        while True:
            try:
                resp = read_head(self.ureader, False)
            except OSError as e:
                raise ProtocolError("upstream read failed: %s" % e)
            if resp is None:
                raise ProtocolError("upstream closed the connection without a response")
            status = int(resp.first[1])
            if 100 <= status < 200 and status != 101:
                if not drop_100:
                    return resp
                continue
            return resp

    def wait_expect(self, method, relay_100):
        """Expect: 100-continue forwarded; whoever moves first decides. Returns a final
        response head when upstream answered without 100, else None (the body may follow).
        relay_100 False swallows the server's 100: the client must time out its wait."""
        while True:
            if self.creader.pending():
                break
            if self.ureader.pending():
                resp = self.read_response(method, drop_100=False)
                if int(resp.first[1]) == 100:
                    if not relay_100:
                        continue
                    self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
                    break
                return resp
            p = select.poll()
            p.register(self.csock.fileno(), select.POLLIN | POLL_CLOSED)
            p.register(self.up.fileno(), select.POLLIN | POLL_CLOSED)
            ev = dict(p.poll(self.proxy.args.upstream_timeout * 1000))
            if not ev:
                raise ProtocolError("no 100-continue and no body within the upstream timeout")
            if self.up.fileno() in ev:
                resp = self.read_response(method, drop_100=False)
                if int(resp.first[1]) == 100:
                    if not relay_100:
                        continue
                    self.send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
                    break
                return resp
            if self.csock.fileno() in ev:
                break
        return None

    # ---- one request
    def serve(self, req):
        """Serve one request; returns True (keep-alive), False (close) or 'rst'."""
        method, target = req.first[0].upper(), req.first[1]
        kind = classify(method, target)
        self.proxy.request_begin(kind)
        t0 = time.monotonic()
        try:
            return self._serve(req, method, target, kind, t0)
        finally:
            self.proxy.request_end()

    def note(self, req, what, t0):
        if self.verbose:
            log("conn %d: %s %s -> %s (%.0f ms)" % (self.conn.id, req.first[0], req.first[1][:200],
                                                   what, (time.monotonic() - t0) * 1000))

    def _serve(self, req, method, target, kind, t0):
        px = self.proxy
        name, cfg = px.pick(["delay_ms"], method, kind, target, lambda n, c: True)
        if cfg:
            time.sleep(cfg["ms"] / 1000.0)
        name, cfg = px.pick(["hold"], method, kind, target, lambda n, c: True)
        if cfg and not px.hold(cfg, self):
            return False

        def pre_ok(n, c):
            if n == "require_md5":
                return req.get("content-md5") is None
            if n == "reset":
                return c["when"] == "before"
            if n == "stall":
                return c["phase"] == "request"
            return True
        name, cfg = px.pick(PRE_MODES, method, kind, target, pre_ok)
        if name == "reset":
            self.note(req, "reset before forwarding", t0)
            log("conn %d: injected reset before %s %s" % (self.conn.id, method, target[:200]))
            return "rst"
        if name in INJECTED or name == "wrong_region":
            self.note(req, "injected %s" % name, t0)
            return self.answer(req, name, cfg)
        if name == "stall":
            log("conn %d: injected stall before forwarding %s %s" %
                (self.conn.id, method, target[:200]))
            if self.client_closed(cfg.get("stall_s")):
                return False

        if not self.connect_upstream():
            return "rst"
        no100 = False
        expect = req.has_token("expect", "100-continue") and framing(req)[0] != "none"
        if expect:
            no100 = px.pick(["no100"], method, kind, target, lambda n, c: True)[0] is not None
        self.send_upstream(req.encode())
        resp = None
        if expect:
            resp = self.wait_expect(method, not no100)
            if resp is not None:  # final answer before the body: relay it and close
                self.relay_response(req, resp, None, None)
                self.lingering_close_client()
                self.note(req, "%s before the body" % resp.first[1], t0)
                return False
        corrupt_at = None
        frame = framing(req)
        if frame[0] == "length":
            cname, ccfg = px.pick(["corrupt_body"], method, kind, target, lambda n, c: True)
            if cname:
                corrupt_at = min(ccfg.get("after_bytes", frame[1] // 2), frame[1] - 1)
                log("conn %d: injected a damaged byte at %d of %s %s" %
                    (self.conn.id, corrupt_at, method, target[:200]))
        self.relay_request_body(req, corrupt_at)
        if resp is None:
            resp = self.read_response(method)

        def post_ok(n, c):
            if n == "reset":
                return c["when"] in ("after", "mid")
            if n == "stall":
                return c["phase"] in ("response", "body")
            return True
        name, cfg = px.pick(POST_MODES, method, kind, target, post_ok)
        if name == "malformed_xml" and not self.is_xml(resp, method):
            name, cfg = None, None
        if name:
            detail = cfg.get("when") or cfg.get("phase") or cfg.get("how")
            log("conn %d: injected %s%s on %s %s" % (self.conn.id, name,
                "(%s)" % detail if detail else "", method, target[:200]))
        keep = self.relay_response(req, resp, name, cfg)
        self.note(req, "%s%s" % (resp.first[1], " injected " + name if name else ""), t0)
        return keep

    def is_xml(self, resp, method):
        ct = (resp.get("content-type") or "").lower()
        fr = framing(resp, method)
        return "xml" in ct and fr[0] in ("length", "chunked") and (fr[1] or 0) <= XML_BUFFER_MAX

    def relay_response(self, req, resp, mode, cfg):
        """Send resp and its body to the client, applying a post-forwarding fault."""
        method = req.first[0].upper()
        fr = framing(resp, method)
        status = resp.first[1]
        close = (fr[0] == "eof" or resp.has_token("connection", "close") or
                 req.has_token("connection", "close") or
                 (req.first[2] == "HTTP/1.0" and not req.has_token("connection", "keep-alive")))
        if mode == "reset" and cfg["when"] == "after":
            for _ in iter_body(self.ureader, fr):
                pass
            if fr[0] == "eof" or resp.has_token("connection", "close"):
                self.close_upstream()
            return "rst"
        if mode == "malformed_xml":
            body = b"".join(iter_body(self.ureader, fr, raw=False))
            body = corrupt_xml(body, cfg["how"])
            hdrs = [(k, v) for k, v in resp.headers
                    if k.lower() not in ("content-length", "transfer-encoding", "content-md5")]
            hdrs.append(("Content-Length", str(len(body))))
            self.send_client(Message(resp.first, hdrs).encode() + body)
            self.proxy.count("responses", status)
            if close:
                self.close_upstream()
            return not close
        if mode == "stall" and (cfg["phase"] == "response" or fr[0] == "none"):
            if self.client_closed(cfg.get("stall_s")):
                self.close_upstream()
                return False
            mode = None
        stop_at = None
        if mode in ("stall", "reset"):
            stop_at = cfg.get("after_bytes")
            if stop_at is None:
                stop_at = max(1, fr[1] // 2) if fr[0] == "length" else 4096
        self.send_client(resp.encode())
        self.proxy.count("responses", status)
        sent = 0
        fired = False
        for piece in iter_body(self.ureader, fr):
            if stop_at is not None and not fired and sent + len(piece) >= stop_at:
                k = max(0, stop_at - sent)
                self.send_client(piece[:k])
                sent += k
                piece = piece[k:]
                fired = True
                if mode == "reset":
                    self.close_upstream()
                    return "rst"
                if self.client_closed(cfg.get("stall_s")):
                    self.close_upstream()
                    return False
            self.send_client(piece)
            sent += len(piece)
        if close:
            self.close_upstream()
        return not close


def corrupt_xml(body, how):
    if how == "garbage":
        mid = len(body) // 2
        return body[:mid] + b"<<&\x01garbage </Unbalanced>&&>>" + body[mid:]
    # truncate: cut inside the document, never at a tag boundary that would still parse
    cut = max(1, len(body) // 2)
    out = body[:cut]
    if out.endswith(b">"):
        out = out[:-1]
    return out


class Control(BaseHTTPRequestHandler):
    proxy = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        data = (json.dumps(obj, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            self.reply(200, self.proxy.stats())
        elif self.path == "/mode":
            self.reply(200, self.proxy.get_modes())
        else:
            self.reply(404, {"error": "unknown path '%s' (use /stats, /mode)" % self.path})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/reset":
            self.proxy.reset_stats()
            self.reply(200, {"ok": True})
        elif self.path == "/mode":
            try:
                doc = json.loads(body.decode() or "{}")
                self.reply(200, self.proxy.set_modes(doc))
            except (ValueError, TypeError, re.error) as e:
                self.reply(400, {"error": str(e)})
        else:
            self.reply(404, {"error": "unknown path '%s' (use /reset, /mode)" % self.path})


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main():
    ap = argparse.ArgumentParser(description="fault-injecting HTTP/1.1 proxy for objfs tests")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server (plain HTTP)")
    ap.add_argument("--control", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    ap.add_argument("--max-conns", type=int, default=2000)
    ap.add_argument("--idle-timeout", type=float, default=600.0)
    ap.add_argument("--upstream-timeout", type=float, default=120.0)
    ap.add_argument("--max-lifetime", type=float, default=7200.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = ap.parse_args()

    threading.stack_size(512 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    proxy = Proxy(args)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(parse_addr(args.listen))
    lsock.listen(4096)
    Control.proxy = proxy
    ctl = ThreadingHTTPServer(parse_addr(args.control), Control)
    ctl.daemon_threads = True
    threading.Thread(target=ctl.serve_forever, daemon=True).start()

    def stop(*_):
        proxy.stopping = True
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watchdog():
        end = time.monotonic() + args.max_lifetime
        while True:
            time.sleep(0.5)
            gone = False
            if args.parent_pid:
                try:
                    os.kill(args.parent_pid, 0)
                except ProcessLookupError:
                    gone = True
                except PermissionError:
                    pass
            if gone or time.monotonic() > end:
                log("exiting: %s" % ("parent gone" if gone else "max lifetime reached"))
                os.kill(os.getpid(), signal.SIGTERM)
                return
    threading.Thread(target=watchdog, daemon=True).start()

    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (lsock.getsockname()[1], ctl.server_address[1]))
    os.rename(tmp, args.port_file)
    log("listening on %s:%d, control %s:%d, upstream %s:%d" %
        (lsock.getsockname() + ctl.server_address + proxy.upstream))
    try:
        proxy.serve_forever(lsock)
    except SystemExit:
        pass
    finally:
        proxy.stopping = True
        try:
            lsock.close()
        except OSError:
            pass
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
