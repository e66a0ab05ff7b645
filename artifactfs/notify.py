"""Readiness: tell whoever started us that the mount answers (or why it failed).

Two listeners: the parent `artifactfs mount` waiting on a pipe (background
mode), and systemd via $NOTIFY_SOCKET (Type=notify). Both hear the same
moment: after the mount point answered a stat through FUSE.
"""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> None:
    """Send one sd_notify datagram if systemd (or a test) asked for it."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.sendall(message.encode())
        except OSError:
            pass


class ReadyPipe:
    """The write end of the pipe the background parent reads one line from."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def _send(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (line.replace("\n", " ") + "\n").encode())
            os.close(self._fd)
        except OSError:
            pass
        self._fd = None

    def ready(self) -> None:
        self._send("READY")
        sd_notify("READY=1")

    def failed(self, message: str) -> None:
        self._send(f"ERROR {message}")
        sd_notify(f"STATUS={message}")
