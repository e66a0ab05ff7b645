"""A loopback HTTP proxy that misbehaves on purpose, in front of a real S3 server.

Each request gets its own upstream connection (the proxy forwards it with
`Connection: close`), so a fault can be aimed at single requests. Faults are
queued per request kind: the next N GETs (or any requests) can be answered
503 SlowDown, reset, stalled after some bytes of the body, or slowed down.
Everything it did is counted, so tests compare it with what the daemon says.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

from artifactfs.devserver import free_port

_RANGE = re.compile(rb"(?i)\r\nrange: *bytes=(\d+)-(\d+)")
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Fault:
    kind: str  # "503" | "500" | "reset" | "stall" | "slow"
    after_bytes: int = 0  # stall: forward this much of the response first
    delay: float = 0.0  # slow: seconds per 64 KiB
    min_range: int = 0  # only GETs of at least this many bytes (not the small probes)


_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
_FOREIGN_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
    b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message>"
    b"</Error>"
)


class FaultProxy:
    """With `refuse_signed`, an endpoint that does not know our keys, as AWS treats
    a MinIO key pair: every signed request gets 403 InvalidAccessKeyId, unsigned
    ones go through (counted as "refused" and "passed")."""

    def __init__(self, target_port: int, refuse_signed: bool = False):
        self.target_port = target_port
        self.refuse_signed = refuse_signed
        self.port = free_port()
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, int, float]] = []  # request line, range length, when
        self._faults: list[tuple[str, Fault]] = []  # (method or "*", fault)
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, fault: Fault, count: int = 1, method: str = "GET") -> None:
        with self._lock:
            self._faults += [(method, fault)] * count

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.close()

    def _next_fault(self, method: str, length: int) -> Fault | None:
        with self._lock:
            for i, (m, fault) in enumerate(self._faults):
                if m in ("*", method) and length >= fault.min_range:
                    del self._faults[i]
                    return fault
        return None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
        try:
            self._handle(client)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            with contextlib.suppress(OSError):
                client.close()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(1 << 16)
            if not chunk:
                return
            head += chunk
        method = head.split(b" ", 1)[0].decode("latin-1")
        wanted = _RANGE.search(head)
        length = int(wanted.group(2)) - int(wanted.group(1)) + 1 if wanted else 0
        self.counts["requests"] += 1
        if self.refuse_signed and _is_signed(head):
            self.counts["refused"] += 1
            client.sendall(_answer(b"403 Forbidden", _FOREIGN_KEY))
            return
        self.counts["passed"] += 1
        self.log.append((head.split(b"\r\n")[0].decode("latin-1"), length, time.monotonic()))
        fault = self._next_fault(method, length)
        if fault is not None:
            self.counts[fault.kind] += 1
        if fault is not None and fault.kind == "503":
            client.sendall(_answer(b"503 Slow Down", _SLOWDOWN))
            return
        if fault is not None and fault.kind == "500":
            client.sendall(_answer(b"500 Internal Server Error", _INTERNAL))
            return
        if fault is not None and fault.kind == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # close() now sends RST
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        head = b"\r\n".join([*lines[:1], b"Connection: close", *lines[1:]])
        with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            upstream.sendall(head)
            sent = 0
            while data := upstream.recv(1 << 16):
                if fault is not None and fault.kind == "stall" and sent >= fault.after_bytes:
                    # hold the connection open, send nothing more, until the client gives up
                    while not self._stop.is_set():
                        try:
                            client.settimeout(0.2)
                            if client.recv(1) == b"":
                                return
                        except TimeoutError:
                            continue
                    return
                if fault is not None and fault.kind == "slow":
                    time.sleep(fault.delay)
                client.sendall(data)
                sent += len(data)


def _is_signed(head: bytes) -> bool:
    text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return "\r\nauthorization:" in text or "x-amz-credential=" in text.split("\r\n")[0]


def _answer(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))  # fmt: skip
