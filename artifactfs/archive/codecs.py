"""Stream decoders for compressed archives, chosen by the detected format.

gzip, bzip2 and xz come with Python; zstd and lz4 are the reference
bindings (`zstandard`, `lz4`). Each returns a sequential reader: random
access into compressed data is served from decoded blocks in the cache.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO

import indexed_gzip
import lz4.frame
import zstandard

from artifactfs.archive.detect import Format
from artifactfs.archive.gzindex import SeekPoints, SeekPointsDamaged, convert_export

COMPRESSED = {Format.GZIP, Format.BZIP2, Format.XZ, Format.ZSTD, Format.LZ4}

# Exceptions a decoder raises on a corrupt or truncated stream.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError, RuntimeError,
    indexed_gzip.ZranError,
)  # fmt: skip


CHECKPOINT_SPACING = 2 << 20  # decoded bytes between gzip seek points (32 KiB window each)
GZIP_READ_BUFFER = 1 << 20  # compressed bytes indexed_gzip reads at a time (its default)


def open_decoder(fmt: Format, raw: BinaryIO, checkpoints: bool = False) -> BinaryIO:
    """A sequential reader; for gzip with `checkpoints`, one that records seek points
    (indexed_gzip) to be saved with `save_checkpoints` for later random access."""
    if fmt is Format.GZIP:
        if checkpoints:
            return indexed_gzip.IndexedGzipFile(  # type: ignore[no-any-return]
                fileobj=raw, spacing=CHECKPOINT_SPACING, auto_build=True
            )
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if fmt is Format.BZIP2:
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if fmt is Format.XZ:
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    if fmt is Format.ZSTD:
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if fmt is Format.LZ4:
        return lz4.frame.LZ4FrameFile(raw, mode="rb")  # type: ignore[return-value]
    raise ValueError(f"{fmt} is not a compression format")


class InflateReader(io.RawIOBase):
    """Raw deflate (a zip member's data) as a sequential reader, with bounded output per read."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._inflater = zlib.decompressobj(-15)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        out = bytearray()
        d = self._inflater
        while len(out) < size and not d.eof:
            data = d.unconsumed_tail or self._raw.read(1 << 20)
            if not data:
                out += d.flush()
                if not d.eof:
                    raise EOFError("deflate stream ends early")
                break
            out += d.decompress(data, size - len(out))
        return bytes(out)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)


def save_checkpoints(decoder: BinaryIO, path: Path) -> bool:
    """Write the seek points a checkpointing decoder gathered, checksummed (see
    gzindex.py); False if it has none."""
    if not isinstance(decoder, indexed_gzip.IndexedGzipFile):
        return False
    export = path.with_name(path.name + ".export")
    try:
        decoder.export_index(str(export))
        convert_export(export, path)
    finally:
        export.unlink(missing_ok=True)
    return True


def open_at_checkpoint(raw: BinaryIO, points: SeekPoints, start: int, end: int) -> BinaryIO:
    """A gzip reader over `raw` positioned at decoded `start`, to read up to `end`,
    decoding from the nearest seek point; only the points around the range are
    loaded. SeekPointsDamaged if their windows fail their checksums."""
    reader = indexed_gzip.IndexedGzipFile(
        fileobj=raw, spacing=points.spacing, readbuf_size=GZIP_READ_BUFFER
    )
    index = points.index_for(start, end)
    try:
        reader.import_index(fileobj=io.BytesIO(index))
    except (OSError, ValueError, indexed_gzip.ZranError) as exc:
        raise SeekPointsDamaged(f"{points.path}: {exc}") from None
    reader.seek(start)
    return reader  # type: ignore[no-any-return]
