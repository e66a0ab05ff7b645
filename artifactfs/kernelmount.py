"""The kernel side of a mount, apart from the daemon that serves it (systemd).

A sandboxed service (ProtectSystem=strict, PrivateTmp, ...) runs in a mount
namespace of its own: a FUSE mount it makes is invisible to the host, and
systemd documents that this cannot be undone (systemd.exec(5), MountFlags=).
So the unit splits the job. `artifactfs kernel-mount` runs with full
privileges in the host's namespace (`ExecStartPre=+`): it has fusermount3
mount the file system and hand back the /dev/fuse descriptor, which it
stores in systemd's file descriptor store (FDSTORE=1, FDNAME=fuse). The
daemon (`ExecStart=`, sandboxed) receives it as a LISTEN_FDS descriptor and
serves it; it needs no privilege at all. `ExecStopPost=+... umount` removes
the mount in the host's namespace.
"""

from __future__ import annotations

import array
import os
import socket
import subprocess
from pathlib import Path

from artifactfs.errors import ConfigError
from artifactfs.notify import sd_notify
from artifactfs.probe import clear_dead_mount, detach

FD_NAME = "fuse"


def fusermount(mountpoint: Path, options: set[str]) -> int:
    """Mount with fusermount3 and return the /dev/fuse descriptor it hands back
    (libfuse's own protocol: a socket in $_FUSE_COMMFD)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
        proc = subprocess.Popen(
            ["fusermount3", "-o", ",".join(sorted(options)), "--", str(mountpoint)],
            env=env, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        theirs.close()
        ours.settimeout(30)
        try:
            _, ancillary, _, _ = ours.recvmsg(1, socket.CMSG_SPACE(array.array("i").itemsize))
        except OSError:
            ancillary = []
        _, err = proc.communicate(timeout=30)
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
    if proc.returncode != 0 or not fds:
        why = err.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"cannot mount {mountpoint}: {why[-1] if why else 'fusermount3 failed'}")
    return fds[0]


def mount_into_fd_store(mountpoint: Path, options: set[str]) -> None:
    """Mount, then give the descriptor to systemd for the service's main process."""
    if not os.environ.get("NOTIFY_SOCKET"):
        raise ConfigError("kernel-mount runs under systemd (ExecStartPre=+), with "
                          "NotifyAccess=all and FileDescriptorStoreMax=1")  # fmt: skip
    clear_dead_mount(mountpoint)
    fd = fusermount(mountpoint, options)
    try:
        sd_notify(f"FDSTOREREMOVE=1\nFDNAME={FD_NAME}")  # one left by an earlier run
        if not sd_notify(f"FDSTORE=1\nFDNAME={FD_NAME}\nFDPOLL=0", (fd,)):
            detach(mountpoint)
            raise ConfigError("systemd did not take the FUSE descriptor (NOTIFY_SOCKET)")
    finally:
        os.close(fd)
