"""Tuning the kernel's side of a mount: read-ahead and FUSE queue depth.

The kernel reads a FUSE file through the page cache in requests no larger
than the mount's read-ahead window, 128 KiB by default: for a daemon in
Python the per-request cost then dominates sequential throughput. Raising
the window of the mount's backing device (as gcsfuse and others document)
lets the kernel send 1 MiB requests, and a deeper background queue keeps
several in flight. Both need root (sysfs); without it the mount works with
the kernel defaults and one debug line says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _write(path: Path, value: int) -> bool:
    try:
        path.write_text(f"{value}\n")
        return True
    except OSError as exc:
        log.debug("cannot set %s to %d: %s", path, value, exc.strerror or exc)
        return False


def tune_mount(mountpoint: Path, dev: int, read_ahead_kb: int, max_background: int) -> None:
    """Tune the mount whose st_dev is `dev`.

    Never stat the mount point from the daemon's event loop: the kernel would
    ask this very daemon for the answer, and wait forever.
    """
    major, minor = os.major(dev), os.minor(dev)
    done = []
    if read_ahead_kb > 0 and _write(
        Path(f"/sys/class/bdi/{major}:{minor}/read_ahead_kb"), read_ahead_kb
    ):
        done.append(f"read-ahead {read_ahead_kb} KiB")
    conn = Path(f"/sys/fs/fuse/connections/{minor}")
    if max_background > 0 and _write(conn / "max_background", max_background):
        _write(conn / "congestion_threshold", max(1, max_background * 3 // 4))
        done.append(f"max_background {max_background}")
    if done:
        log.debug("kernel tuning for %s: %s", mountpoint, ", ".join(done))
