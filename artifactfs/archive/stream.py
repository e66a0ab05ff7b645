"""One sequential pass over a decoded stream, cut into blocks on the way.

`BlockTee` is the file a streaming scanner (tarfile in `r|` mode) reads:
every byte it passes on is also collected into fixed-size blocks handed to
`on_block`, so a single decode both builds the member index and fills the
block cache with the decoded content. It stops with DecodeLimit when the
decoded size passes the per-archive limit (decompression bombs).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO


class DecodeLimit(Exception):
    """The decoded stream is larger than allowed for one archive."""


class BlockTee(io.RawIOBase):
    def __init__(
        self,
        source: BinaryIO,
        block_size: int,
        on_block: Callable[[int, bytes], None],
        limit: int,
        stop_after_block: int | None = None,
    ):
        super().__init__()
        self._source = source
        self._block_size = block_size
        self._on_block = on_block
        self._limit = limit
        self._stop_after = stop_after_block
        self._pending = bytearray()
        self._ready = b""  # decoded bytes not yet returned to the scanner
        self._ready_pos = 0
        self._blockno = 0
        self.position = 0
        self.finished = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        if self._ready_pos >= len(self._ready):
            # Decode in 64 KiB steps whatever the scanner asks (tarfile asks 10 KiB): fewer
            # calls into the decoder, and a corrupt stream loses at most one step of good data.
            data = self._source.read(max(size, 64 << 10))
            if not data:
                self._flush(final=True)
                return b""
            self.position += len(data)
            if self.position > self._limit:
                raise DecodeLimit(f"decoded size passed the limit of {self._limit} bytes")
            self._pending += data
            self._flush(final=False)
            self._ready, self._ready_pos = data, 0
        out = self._ready[self._ready_pos : self._ready_pos + size]
        self._ready_pos += len(out)
        return out

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def _flush(self, final: bool) -> None:
        while len(self._pending) >= self._block_size or (final and self._pending):
            chunk = bytes(self._pending[: self._block_size])
            del self._pending[: self._block_size]
            self._on_block(self._blockno, chunk)
            self._blockno += 1
        if final:
            self.finished = True

    def close_partial(self) -> None:
        """Hand on the bytes decoded so far as a last, short block (after a decode error)."""
        self._flush(final=True)

    def drain(self) -> int:
        """Read what the scanner left (trailing padding, data it skipped); return the size."""
        while self.read(1 << 20):
            if self._stop_after is not None and self._blockno > self._stop_after:
                break
        return self.position
