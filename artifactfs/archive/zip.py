"""Scan a zip's central directory (read from the tail) into Members.

A stored member is a byte range of the object, like a tar member. A
deflated member is a compressed range: its Member carries `codec`
"deflate" with the range in `offset`/`csize`, and is decoded on first read
into the block cache (see archives.py). Symlinks (Unix mode in the
external attributes) keep their target, read at index time.
"""

from __future__ import annotations

import calendar
import logging
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from artifactfs.archive.members import Member, clean_path

log = logging.getLogger(__name__)

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header, 30 bytes
_EXT_TIME = 0x5455


def _mtime_ns(info: zipfile.ZipInfo) -> int:
    """UTC mtime from the extended-timestamp field if present, else the DOS time as UTC."""
    extra = info.extra
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        if tag == _EXT_TIME and size >= 5 and extra[i + 4] & 1:
            return struct.unpack_from("<I", extra, i + 5)[0] * 1_000_000_000
        i += 4 + size
    try:
        return calendar.timegm((*info.date_time, 0, 0, 0)) * 1_000_000_000
    except (ValueError, OverflowError):  # month 13, day 0...: a damaged entry
        return 0


# What zipfile raises on damaged or unsupported input (found by tests/unit/test_fuzz.py).
_BAD_ZIP = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            OverflowError, struct.error, zlib.error)  # fmt: skip


def scan_zip(fileobj: BinaryIO, size: int, label: str) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(fileobj)  # reads the end records and the central directory
    except _BAD_ZIP as exc:
        log.warning("%s: not a readable zip (%s)", label, exc)
        return
    with archive:
        for info in archive.infolist():
            try:
                member = _member(archive, fileobj, info, size, label)
            except _BAD_ZIP as exc:  # one damaged entry fails alone
                log.warning("%s: member %r skipped (%s)", label, info.filename, exc)
                continue
            if member is not None:
                yield member


def _data_offset(fileobj: BinaryIO, info: zipfile.ZipInfo) -> int:
    fileobj.seek(info.header_offset)
    header = fileobj.read(_LOCAL.size)
    fields = _LOCAL.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local header")
    return info.header_offset + _LOCAL.size + fields[9] + fields[10]


def _member(archive: zipfile.ZipFile, fileobj: BinaryIO, info: zipfile.ZipInfo, size: int,
            label: str) -> Member | None:  # fmt: skip
    path = clean_path(info.filename)
    if path is None:
        log.warning("%s: member %r skipped (unsafe, not UTF-8, or too long a name)", label,
                    info.filename)  # fmt: skip
        return None
    unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
    mtime = _mtime_ns(info)
    if info.is_dir():
        return Member(path, "dir", (unix_mode & 0o7777) or 0o755, 0, mtime, 0)
    if info.flag_bits & 0x1:
        log.warning("%s: member %r skipped (encrypted)", label, path)
        return None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        log.warning("%s: member %r skipped (compression method %d is not served)", label, path,
                    info.compress_type)  # fmt: skip
        return None
    if info.header_offset < 0:  # zipfile shifts offsets for data before the archive
        log.warning("%s: member %r skipped (its header lies before the archive)", label, path)
        return None
    try:
        offset = _data_offset(fileobj, info)
    except (zipfile.BadZipFile, struct.error, OSError) as exc:
        log.warning("%s: member %r skipped (%s)", label, path, exc)
        return None
    if offset + info.compress_size > size:
        log.warning("%s: member %r skipped (its data runs past the end)", label, path)
        return None
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        log.warning("%s: member %r skipped (stored, but its sizes disagree)", label, path)
        return None
    mode = (unix_mode & 0o7777) or 0o644
    if stat.S_ISLNK(unix_mode):
        if info.file_size > 4096:  # PATH_MAX: anything longer is not a link target
            log.warning("%s: symlink %r skipped (a %d-byte target)", label, path, info.file_size)
            return None
        try:
            target = archive.read(info).decode("utf-8")
            if "\0" in target:
                raise ValueError("NUL in target")
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            log.warning("%s: symlink %r skipped (%s)", label, path, exc)
            return None
        return Member(path, "symlink", 0o777, len(target), mtime, 0, target)
    if info.compress_type == zipfile.ZIP_STORED:
        return Member(path, "file", mode, info.file_size, mtime, offset)
    return Member(path, "file", mode, info.file_size, mtime, offset,
                  codec="deflate", csize=info.compress_size)  # fmt: skip
