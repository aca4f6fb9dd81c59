"""A fault-injecting HTTP proxy between boto3 and an S3 server.

It forwards every request to the upstream server and, at configured rates, injects the faults
object stores really show: 500 InternalError and 503 SlowDown (before the request reaches the
server), connection resets (before the server sees the request, or after it has acted on it:
the ambiguous case a client cannot tell apart), a stall in the middle of a response body (the
client's read timeout fires), slow responses and truncated bodies (fewer bytes than the
Content-Length promised, then the connection closes).

Decisions come from a seeded RNG in request order, so a single-threaded client sees the same
faults on every run; ``injected`` counts what was done.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("error_500", "slowdown_503", "reset_before", "reset_after", "stall_body", "truncate")


@dataclass
class FaultMix:
    """Probability of each fault per request (their sum is the failing fraction), plus slow
    responses, which succeed late."""

    error_500: float = 0.0
    slowdown_503: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    stall_body: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.2
    stall_s: float = 3.0
    """How long a mid-body stall lasts: longer than the client's read timeout."""

    @property
    def failing(self) -> float:
        return sum(getattr(self, f) for f in FAULTS)

    @classmethod
    def uniform(cls, rate: float, **extra: float) -> FaultMix:
        """``rate`` of requests failing, spread evenly over every kind of fault."""
        return cls(**{f: rate / len(FAULTS) for f in FAULTS}, **extra)


@dataclass
class FaultProxy:
    """``with FaultProxy(upstream, mix, seed) as proxy: ... proxy.url``."""

    upstream: str
    mix: FaultMix = field(default_factory=FaultMix)
    seed: int = 0
    injected: Counter = field(default_factory=Counter)
    requests: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.enabled = True
        up = urlsplit(self.upstream)
        self._up_host, self._up_port = up.hostname or "127.0.0.1", up.port or 80
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def choose(self) -> str | None:
        """The fault for the next request (or "slow", or None)."""
        with self._lock:
            self.requests += 1
            if not self.enabled:
                return None
            x = self._rng.random()
            for name in (*FAULTS, "slow"):
                x -= getattr(self.mix, name)
                if x < 0:
                    return name
            return None

    def count(self, fault: str) -> None:
        """Record a fault that was applied (a body fault needs a body to break)."""
        with self._lock:
            self.injected[fault] += 1

    def summary(self) -> dict[str, int]:
        return {"requests": self.requests, **{k: self.injected[k] for k in sorted(self.injected)}}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a stalled or broken response is expected here."""


_ERRORS = {
    "error_500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "slowdown_503": (503, "SlowDown", "Please reduce your request rate."),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(out)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashed load balancer does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _handle(self) -> None:
        body = self._body()
        fault = self.owner.choose()
        if fault in (*_ERRORS, "reset_before", "slow"):
            self.owner.count(fault)
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)
            return
        if fault == "reset_before":
            self._reset()
            return
        if fault == "slow":
            time.sleep(self.owner.mix.slow_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.owner._up_host, self.owner._up_port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            status, reason, resp_headers = resp.status, resp.reason, resp.getheaders()
        finally:
            conn.close()
        if fault == "reset_after":  # the server acted; the client never hears of it
            self.owner.count(fault)
            self._reset()
            return
        self.send_response(status, reason)
        head = self.command == "HEAD"  # its Content-Length is the object's: pass it on
        for k, v in resp_headers:
            if k.lower() in ("transfer-encoding", "connection", "date"):
                continue
            if k.lower() != "content-length" or head:
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if head:
            return
        if fault in ("stall_body", "truncate") and len(payload) > 1:
            self.owner.count(fault)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if fault == "stall_body":
                time.sleep(self.owner.mix.stall_s)
            self._reset()
            return
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815
