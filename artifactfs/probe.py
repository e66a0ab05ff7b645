"""`artifactfs ready MOUNTPOINT`: is this an artifactfs mount, and does it answer?

Used by Kubernetes readiness probes and by scripts that wait for a mount.
The stat runs in a daemon thread with a deadline, so a wedged daemon makes
the probe fail in time instead of hanging it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

FSTYPE = "fuse.artifactfs"


def mount_type(path: str) -> str | None:
    """The type of the topmost mount at `path` (the last line for it wins)."""
    found = None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1].replace("\\040", " ") == path:
                found = fields[2]
    return found


def not_ready_reason(mountpoint: Path, timeout: float = 5.0) -> str | None:
    """None when the mount answers; else why not, in a few words."""
    path = os.path.abspath(mountpoint)
    fstype = mount_type(path)
    if fstype is None:
        return f"{path} is not mounted"
    if fstype != FSTYPE:
        return f"{path} is a {fstype} mount, not artifactfs"
    result: list[BaseException | os.stat_result] = []

    def look() -> None:
        try:
            st = os.stat(path)
            os.listdir(path)
            result.append(st)
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=look, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"{path} did not answer within {timeout:g} s"
    if isinstance(result[0], OSError):
        return f"{path}: {result[0].strerror}"
    return None


def is_dead_mount(path: Path) -> bool:
    """A FUSE mount whose daemon is gone (ENOTCONN). A stat may still be answered
    from the kernel's attribute cache; a statfs never is."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    if not os.path.ismount(path):
        return False
    if not (mount_type(os.path.abspath(path)) or "").startswith("fuse"):
        return False
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def clear_dead_mount(path: Path) -> bool:
    """Detach a dead mount left by a daemon that died; True if there was one."""
    if not is_dead_mount(path):
        return False
    detach(path)
    return True


def detach(path: Path) -> None:
    """Lazily unmount whatever is mounted at `path` (fusermount3 -uz); quiet if nothing is."""
    subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True)
