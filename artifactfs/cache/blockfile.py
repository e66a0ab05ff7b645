"""The on-disk format of one cached block: a 64-byte header, then the data.

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


class CorruptBlock(ValueError):
    """A block file that does not hold what its name promises."""


def encode(digest: bytes, blockno: int, data: bytes) -> bytes:
    return HEADER.pack(MAGIC, blockno, len(data), zlib.crc32(data), digest)


def decode(raw: bytes | memoryview, digest: bytes, blockno: int, length: int) -> bytes:
    """The data of a block file, or CorruptBlock if anything disagrees."""
    if len(raw) < HEADER_SIZE:
        raise CorruptBlock("shorter than its header")
    magic, got_block, got_len, crc, got_digest = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptBlock("bad magic")
    if got_digest != digest or got_block != blockno:
        raise CorruptBlock("belongs to another block")
    if got_len != length or len(raw) != HEADER_SIZE + length:
        raise CorruptBlock(f"length {len(raw) - HEADER_SIZE}, expected {length}")
    data = bytes(memoryview(raw)[HEADER_SIZE:])
    if zlib.crc32(data) != crc:
        raise CorruptBlock("checksum mismatch")
    return data
