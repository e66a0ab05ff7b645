"""A TCP proxy on loopback that counts the bytes a server sends: measured on the wire."""

from __future__ import annotations

import contextlib
import socket
import threading

from artifactfs.devserver import free_port


class CountingProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.downstream = 0  # bytes from the server to the client
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if count:
                    with self._lock:
                        self.downstream += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


_REFUSAL = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
_REFUSAL_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
    b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message>"
    b"</Error>"
)


class ForeignEndpointProxy:
    """An S3 endpoint that does not know our keys, as AWS treats a MinIO key pair.

    Any signed request gets `403 InvalidAccessKeyId`, as AWS answers it;
    unsigned ones go to the server behind, one request per connection.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.refused = 0
        self.passed = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ForeignEndpointProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(1 << 16)
                if not chunk:
                    return
                head += chunk
            text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            if "\r\nauthorization:" in text or "x-amz-credential=" in text.split("\r\n")[0]:
                self.refused += 1
                client.sendall(_REFUSAL % (len(_REFUSAL_BODY), _REFUSAL_BODY))
                return
            self.passed += 1
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            head = b"\r\n".join([*lines[:1], b"Connection: close", *lines[1:]])
            with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
                upstream.sendall(head)
                while data := upstream.recv(1 << 16):
                    client.sendall(data)
