"""Scan a tar's headers into Members, skipping the members' data.

Python's tarfile parses every flavour we meet (v7, ustar, GNU long names and
links, PAX records); reading through a RangeFile, it seeks past each
member's data, so only the header blocks are fetched. A member that cannot
be shown is skipped with one log line naming the archive and the member;
the rest of the archive stays readable.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from artifactfs.archive.members import Member, clean_path, is_utf8

log = logging.getLogger(__name__)


def scan_tar(fileobj: BinaryIO, size: int, label: str, stream: bool = False) -> Iterator[Member]:
    """Members of the tar in `fileobj`, in archive order.

    `size` is the archive's length, or -1 with `stream=True` for a decoded
    stream read once from the start (no seeking; data is read and dropped).
    """
    try:
        mode = "r|" if stream else "r:"
        tar = tarfile.open(fileobj=fileobj, mode=mode)  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        log.warning("%s: not a readable tar (%s)", label, exc)
        return
    with tar:  # closing a TarFile leaves the caller's fileobj open
        yield from _scan(tar, fileobj, size, label)


def _scan(tar: tarfile.TarFile, fileobj: BinaryIO, size: int, label: str) -> Iterator[Member]:
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, EOFError, OSError) as exc:
            log.warning("%s: stopped reading at byte %d (%s)", label, tar.offset, exc)
            return
        tar.members.clear()  # tarfile keeps every member otherwise: memory for 1M members
        if info is None:
            if size < 0:
                return
            if size - tar.offset > 2 * tarfile.BLOCKSIZE and not _zeros_follow(fileobj, tar):
                log.warning("%s: unreadable header at byte %d; members after it are not shown",
                            label, tar.offset)  # fmt: skip
            return
        member = _member(info, size, label)
        if member is not None:
            yield member


def _zeros_follow(fileobj: BinaryIO, tar: tarfile.TarFile) -> bool:
    fileobj.seek(tar.offset)
    return fileobj.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE)


def _member(info: tarfile.TarInfo, size: int, label: str) -> Member | None:
    path = clean_path(info.name)
    if path is None:
        if info.name.strip("./"):
            log.warning("%s: member %r skipped (unsafe, not UTF-8, or too long a name)", label,
                        info.name)  # fmt: skip
        return None
    mtime_ns = int(float(info.mtime) * 1_000_000_000)
    mode = info.mode & 0o7777
    if info.isdir():
        return Member(path, "dir", mode, 0, mtime_ns, 0)
    if info.issym():
        if not is_utf8(info.linkname) or "\0" in info.linkname:
            log.warning("%s: symlink %r skipped (target not UTF-8)", label, path)
            return None
        return Member(path, "symlink", mode or 0o777, len(info.linkname), mtime_ns, 0,
                      info.linkname)  # fmt: skip
    if info.islnk():
        target = clean_path(info.linkname)
        if target is None:
            log.warning("%s: hard link %r -> %r skipped (unsafe target)", label, path,
                        info.linkname)  # fmt: skip
            return None
        return Member(path, "hardlink", mode, 0, mtime_ns, 0, target)
    if info.isreg():
        if info.sparse is not None:
            packed = sum(n for _, n in info.sparse)
            if size >= 0 and info.offset_data + packed > size:
                log.warning("%s: member %r skipped (its data runs past the end of the archive)",
                            label, path)  # fmt: skip
                return None
            segments = json.dumps([[o, n] for o, n in info.sparse])
            return Member(path, "file", mode, info.size, mtime_ns, info.offset_data, segments,
                          codec="sparse", csize=packed)  # fmt: skip
        if size >= 0 and info.offset_data + info.size > size:
            log.warning("%s: member %r skipped (its data runs past the end of the archive)",
                        label, path)  # fmt: skip
            return None
        return Member(path, "file", mode, info.size, mtime_ns, info.offset_data)
    log.debug("%s: member %r skipped (device or fifo)", label, path)
    return None
