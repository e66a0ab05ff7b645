"""A read-only, seekable file over byte ranges fetched on demand.

Scanners (tarfile, zipfile) read through this, so they never know where the
bytes come from; they run in a worker thread and `fetch` is whatever the
caller hands in (a ranged GET, a local pread). Reads are buffered in a window
that starts small (a header among big members costs 64 KiB) and doubles
while reads stay contiguous (a tar of many small files is read in a few
large requests), and seeking costs nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable

Fetch = Callable[[int, int], bytes]


class RangeFile(io.RawIOBase):
    def __init__(self, fetch: Fetch, size: int, window: int = 64 << 10,
                 max_window: int = 8 << 20):  # fmt: skip
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._min_window = window
        self._max_window = max(window, max_window)
        self._window = window
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self.bytes_fetched = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._size + offset
        self._pos = max(0, self._pos)
        return self._pos

    def _get(self, offset: int, length: int) -> bytes:
        length = min(length, self._size - offset)
        if length <= 0:
            return b""
        data = self._fetch(offset, length)
        self.bytes_fetched += len(data)
        self.requests += 1
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        end = min(self._pos + size, self._size)
        if self._pos >= end:
            return b""
        buf_end = self._buf_start + len(self._buf)
        if not (self._buf_start <= self._pos and end <= buf_end):
            if end - self._pos > self._window:
                data = self._get(self._pos, end - self._pos)
                self._pos += len(data)
                return data
            # Near the end of the last window (a tar skipping a small member): grow.
            contiguous = buf_end <= self._pos <= buf_end + self._window
            self._window = (
                min(self._window * 2, self._max_window) if contiguous else self._min_window
            )
            self._buf = self._get(self._pos, self._window)
            self._buf_start = self._pos
        lo = self._pos - self._buf_start
        data = self._buf[lo : lo + (end - self._pos)]
        self._pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        n = len(data)
        memoryview(b)[:n] = data
        return n
