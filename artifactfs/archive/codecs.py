"""Stream decoders for compressed archives, chosen by the detected format.

gzip, bzip2 and xz come with Python; zstd and lz4 are the reference
bindings (`zstandard`, `lz4`). Each returns a sequential reader: random
access into compressed data is served from decoded blocks in the cache.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import BinaryIO

import lz4.frame
import zstandard

from artifactfs.archive.detect import Format

COMPRESSED = {Format.GZIP, Format.BZIP2, Format.XZ, Format.ZSTD, Format.LZ4}

# Exceptions a decoder raises on a corrupt or truncated stream.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError, RuntimeError,
)  # fmt: skip


def open_decoder(fmt: Format, raw: BinaryIO) -> BinaryIO:
    if fmt is Format.GZIP:
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
