"""The on-disk format of one cached block: a 64-byte header in a 4 KiB page, then the data.

The data starts at a page boundary so blocks can be written with O_DIRECT
(no copy into the page cache; see blocks.py); the file is padded to whole
pages, and the header's length says how much of it is data.

The header names the object version (its digest) and the block number, and
carries the data length and its CRC-32 (zlib), so a
block file that is truncated, corrupted, or renamed to the wrong place is
detected every time it is read from disk.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"AFSBLK01"
HEADER = struct.Struct("<8sQII32s8x")  # magic, block number, length, crc32, version digest
HEADER_SIZE = HEADER.size
assert HEADER_SIZE == 64
PAGE = 4096
DATA_OFFSET = PAGE  # where the data starts in the file


def file_size(length: int) -> int:
    """Bytes on disk for a block of `length` bytes (header page + data rounded up)."""
    return DATA_OFFSET + (length + PAGE - 1) // PAGE * PAGE


class CorruptBlock(ValueError):
    """A block file that does not hold what its name promises."""


def encode(digest: bytes, blockno: int, data: bytes) -> bytes:
    return HEADER.pack(MAGIC, blockno, len(data), zlib.crc32(data), digest)


def pieces(digest: bytes, blockno: int, data: bytes) -> list[bytes]:
    """The whole file as buffers to write in order: header page, data, padding."""
    header = encode(digest, blockno, data)
    tail = file_size(len(data)) - DATA_OFFSET - len(data)
    return [header, bytes(DATA_OFFSET - HEADER_SIZE), data, bytes(tail)]


def verify(header: bytes, data: bytes, digest: bytes, blockno: int, length: int) -> None:
    """Raise CorruptBlock unless `header` + `data` are exactly this block, intact."""
    if len(header) < HEADER_SIZE:
        raise CorruptBlock("shorter than its header")
    magic, got_block, got_len, crc, got_digest = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise CorruptBlock("bad magic")
    if got_digest != digest or got_block != blockno:
        raise CorruptBlock("belongs to another block")
    if got_len != length or len(data) != length:
        raise CorruptBlock(f"length {len(data)}, expected {length}")
    if zlib.crc32(data) != crc:
        raise CorruptBlock("checksum mismatch")


def decode(raw: bytes, digest: bytes, blockno: int, length: int) -> bytes:
    """The data of a whole block file, or CorruptBlock if anything disagrees."""
    if len(raw) != file_size(length):
        raise CorruptBlock(f"file of {len(raw)} bytes, expected {file_size(length)}")
    header, data = raw[:HEADER_SIZE], raw[DATA_OFFSET : DATA_OFFSET + length]
    verify(header, data, digest, blockno, length)
    return data
