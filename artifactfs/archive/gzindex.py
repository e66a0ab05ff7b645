"""Seek points of a gzip stream, kept checksummed and loaded a few at a time.

indexed_gzip records a seek point (an offset and the 32 KiB window before
it) at least every 2 MiB of output while the archive is decoded once, and
can export them to a file; but it imports such a file whole, 1.6 % of the
decoded size (16 MiB for a 1 GiB archive, 320 MiB for 20 GiB), and nothing
in it is checksummed, so a flipped bit would decode to wrong bytes without
an error. So the daemon converts the export into its own file:

    "AFSGZP01", compressed size, decoded size, spacing, window size,
    number of points, CRC-32 of the point table;
    per point: compressed offset, decoded offset, bits, has window, window CRC-32;
    the windows.

Decoding one block reads the point table (22 bytes a point) and the windows
of the few points around the block, checks them, and hands indexed_gzip an
index of just those (in its own format, GZIDX version 1, the one
indexed_gzip >= 1.1 writes and reads). The point table also gives the
compressed span a block needs, so it can be fetched before decoding starts.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

# indexed_gzip's export format, version 1
_GZ_MAGIC = b"GZIDX"
_GZ_HEADER = struct.Struct("<5sBBQQIII")  # magic, version, flags, compressed size,
# decoded size, spacing, window size, number of points
_GZ_POINT = struct.Struct("<QQBB")  # compressed offset, decoded offset, bits, has window

# this module's file
_MAGIC = b"AFSGZP01"
_HEADER = struct.Struct("<8sQQIIII")  # magic, sizes, spacing, window size, points, table CRC
_POINT = struct.Struct("<QQBBI")  # offsets, bits, has window, window CRC


def _decoded(point: SeekPoint) -> int:
    return point.uncompressed


class SeekPointsDamaged(ValueError):
    """A seek-point file that is not what it should be (not the archive's fault)."""


@dataclass(frozen=True, slots=True)
class SeekPoint:
    compressed: int
    uncompressed: int
    bits: int
    window_at: int  # file offset of its window, -1 if it has none
    window_crc: int


@dataclass(frozen=True, slots=True)
class SeekPoints:
    path: Path
    compressed_size: int
    uncompressed_size: int
    spacing: int
    window_size: int
    points: tuple[SeekPoint, ...]  # by decoded offset, ascending

    def before(self, offset: int) -> int:
        """Index of the last point at or before decoded `offset`."""
        return max(0, bisect.bisect_right(self.points, offset, key=_decoded) - 1)

    def _covering(self, start: int, end: int) -> tuple[int, int]:
        """The point before `start` and the first one at or after `end` (or the last)."""
        first = last = self.before(start)
        while last + 1 < len(self.points) and self.points[last].uncompressed < end:
            last += 1
        return first, last

    def compressed_span(self, start: int, end: int, slack: int) -> tuple[int, int]:
        """Compressed bytes that decoding [start, end) reads: from the point before
        `start` (one byte earlier when it starts mid-byte; the gzip header when it
        is the stream's start) to the first point at or after `end`, plus the
        decoder's read-ahead `slack`. Reads outside it still work (the caller
        fetches them); they are only slower."""
        first, last = self._covering(start, end)
        p = self.points[first]
        lo = 0 if first == 0 else p.compressed - (1 if p.bits else 0)
        hi = self.compressed_size
        if self.points[last].uncompressed >= end:
            hi = min(hi, self.points[last].compressed + 1 + slack)
        return max(0, lo), hi

    def index_for(self, start: int, end: int) -> bytes:
        """An index for indexed_gzip with every point but the windows of only those
        covering decoded [start, end). (With fewer points it would go on building
        the index past the last one, reading the archive to its end.)"""
        first, last = self._covering(start, end)
        records, windows = [], []
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below; OSError is reported as damage)
        except OSError as exc:
            raise SeekPointsDamaged(f"{self.path}: {exc.strerror or exc}") from None
        with f:
            for i, p in enumerate(self.points):
                with_window = p.window_at >= 0 and first <= i <= last
                records.append(_GZ_POINT.pack(p.compressed, p.uncompressed, p.bits, with_window))
                if with_window:
                    f.seek(p.window_at)
                    window = f.read(self.window_size)
                    if len(window) != self.window_size or zlib.crc32(window) != p.window_crc:
                        raise SeekPointsDamaged(f"{self.path}: window of point {i} is damaged")
                    windows.append(window)
        header = _GZ_HEADER.pack(_GZ_MAGIC, 1, 0, self.compressed_size, self.uncompressed_size,
                                 self.spacing, self.window_size, len(records))  # fmt: skip
        return header + b"".join(records) + b"".join(windows)


def convert_export(export: Path, out: Path) -> None:
    """Write indexed_gzip's exported index `export` as a checksummed seek-point file."""
    with open(export, "rb") as f:
        head = f.read(_GZ_HEADER.size)
        if len(head) != _GZ_HEADER.size:
            raise SeekPointsDamaged(f"{export}: shorter than its header")
        magic, version, flags, csize, usize, spacing, wsize, npoints = _GZ_HEADER.unpack(head)
        if magic != _GZ_MAGIC or version != 1 or flags != 0:
            raise SeekPointsDamaged(f"{export}: not a version 1 indexed_gzip index")
        if npoints * _GZ_POINT.size > os.fstat(f.fileno()).st_size:
            raise SeekPointsDamaged(f"{export}: point table cut short")
        table = f.read(npoints * _GZ_POINT.size)
        if len(table) != npoints * _GZ_POINT.size:
            raise SeekPointsDamaged(f"{export}: point table cut short")
        records, windows = [], []
        for c, u, bits, has_window in _GZ_POINT.iter_unpack(table):
            window = f.read(wsize) if has_window else b""
            if len(window) != (wsize if has_window else 0):
                raise SeekPointsDamaged(f"{export}: window cut short")
            records.append(_POINT.pack(c, u, bits, has_window, zlib.crc32(window)))
            windows.append(window)
    body = b"".join(records)
    header = _HEADER.pack(_MAGIC, csize, usize, spacing, wsize, npoints, _table_crc(csize, usize,
                          spacing, wsize, npoints, body))  # fmt: skip
    with open(out, "wb") as f:
        f.write(header + body)
        for window in windows:
            f.write(window)


def _table_crc(csize: int, usize: int, spacing: int, wsize: int, npoints: int, body: bytes) -> int:
    return zlib.crc32(struct.pack("<QQIII", csize, usize, spacing, wsize, npoints) + body)


def read_seek_points(path: Path) -> SeekPoints:
    """The point table of a seek-point file, checked; SeekPointsDamaged if it is not."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) != _HEADER.size:
            raise SeekPointsDamaged(f"{path}: shorter than its header")
        magic, csize, usize, spacing, wsize, npoints, crc = _HEADER.unpack(head)
        if magic != _MAGIC:
            raise SeekPointsDamaged(f"{path}: not a seek-point file")
        if npoints * _POINT.size > os.fstat(f.fileno()).st_size:  # read no more than is there
            raise SeekPointsDamaged(f"{path}: point table cut short")
        body = f.read(npoints * _POINT.size)
        if len(body) != npoints * _POINT.size or npoints == 0:
            raise SeekPointsDamaged(f"{path}: point table cut short")
        if _table_crc(csize, usize, spacing, wsize, npoints, body) != crc:
            raise SeekPointsDamaged(f"{path}: point table checksum mismatch")
        windows_at = _HEADER.size + len(body)
        points = []
        for c, u, bits, has_window, window_crc in _POINT.iter_unpack(body):
            points.append(SeekPoint(c, u, bits, windows_at if has_window else -1, window_crc))
            windows_at += wsize if has_window else 0
    return SeekPoints(path, csize, usize, spacing, wsize, tuple(points))
