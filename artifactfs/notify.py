"""Readiness: tell whoever started us that the mount answers (or why it failed).

Two listeners: the parent `artifactfs mount` waiting on a pipe (background
mode), and systemd via $NOTIFY_SOCKET (Type=notify). Both hear the same
moment: after the mount point answered a stat through FUSE.
"""

from __future__ import annotations

import array
import os
import socket

LISTEN_FDS_START = 3


def sd_notify(message: str, fds: tuple[int, ...] = ()) -> bool:
    """Send one sd_notify datagram (with `fds` attached) if systemd, or a test, asked."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.sendmsg([message.encode()], ancillary)
        except OSError:
            return False
    return True


def listen_fds() -> dict[str, int]:
    """File descriptors systemd passed us (sd_listen_fds(3)), by name.

    The variables are removed, so no child inherits them."""
    try:
        pid = int(os.environ.get("LISTEN_PID", "0"))
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return {}
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    if pid != os.getpid() or count <= 0:
        return {}
    found = {}
    for i in range(count):
        fd = LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        found[names[i] if i < len(names) and names[i] else f"fd{i}"] = fd
    return found


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
