"""A live mount answers `artifactfs stat` over a Unix socket of its own.

The socket is named after the mount point, so the CLI finds it from the
mount point alone, and lives in a 0700 runtime directory of the daemon's
user (root's `/run/artifactfs`, else `$XDG_RUNTIME_DIR/artifactfs`, else
`/tmp/artifactfs-<uid>`). It serves the same figures as the Prometheus
endpoint, and nothing else: no request can change the mount.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

REQUEST = b"figures\n"


def _runtime_dirs() -> list[Path]:
    dirs = [Path("/run/artifactfs")]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(Path(xdg) / "artifactfs")
    dirs.append(Path("/tmp") / f"artifactfs-{os.getuid()}")
    return dirs


def socket_name(mountpoint: Path) -> str:
    return hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:20] + ".sock"


def _writable_runtime_dir() -> Path:
    for d in _runtime_dirs():
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.access(d, os.W_OK) and d.stat().st_uid == os.geteuid():
                return d
        except OSError:
            continue
    raise OSError("no runtime directory to put the control socket in")


async def serve(mountpoint: Path, figures: Callable[[], dict[str, Any]]) -> None:
    """Answer `figures` requests until cancelled; the socket is removed on the way out."""
    path = _writable_runtime_dir() / socket_name(mountpoint)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(5):
                request = await stream.receive_some(64)
                if request == REQUEST:
                    await stream.send_all(json.dumps(figures()).encode())

    try:
        await trio.serve_listeners(answer, [trio.SocketListener(sock)])
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def query(mountpoint: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The figures of the live mount at `mountpoint` (OSError if none answers)."""
    name = socket_name(mountpoint)
    candidates = [d / name for d in _runtime_dirs()]
    candidates += sorted(Path("/tmp").glob(f"artifactfs-*/{name}"))  # another user's daemon
    for path in candidates:
        if not path.exists():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                continue  # a socket left by a daemon that died
            s.sendall(REQUEST)
            chunks = []
            while chunk := s.recv(1 << 16):
                chunks.append(chunk)
        return dict(json.loads(b"".join(chunks)))
    raise FileNotFoundError(f"no artifactfs daemon answers for {mountpoint}")
