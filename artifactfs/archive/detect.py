"""Archive formats, told by content (never by the key's extension).

StudioML writes uncompressed tars under `.tar.gz` keys, so the extension
says nothing reliable about the bytes. The first 512 bytes do.
"""

from __future__ import annotations

import enum

SNIFF_BYTES = 512

# Names that may hold an archive; only these are looked at, so listing a
# prefix of plain objects costs no extra request. What they hold is then
# decided by content alone.
ARCHIVE_SUFFIXES = (
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz",
    ".tar.zst", ".tar.lz4", ".zip",
)  # fmt: skip


# A single compressed file (`notes.txt.gz`) shows as the decoded file (`notes.txt`).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4")


class Format(enum.Enum):
    TAR = "tar"
    ZIP = "zip"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    LZ4 = "lz4"


_MAGIC = [
    (b"\x1f\x8b", Format.GZIP),
    (b"BZh", Format.BZIP2),
    (b"\xfd7zXZ\x00", Format.XZ),
    (b"\x28\xb5\x2f\xfd", Format.ZSTD),
    (b"\x04\x22\x4d\x18", Format.LZ4),
    (b"PK\x03\x04", Format.ZIP),
    (b"PK\x05\x06", Format.ZIP),  # an empty zip: only the end of central directory
]


def is_tar_header(block: bytes) -> bool:
    """A 512-byte block is a tar header if it says ustar/GNU or its checksum holds (v7)."""
    if len(block) < 512 or block[:1] == b"\0":
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:512]) + 8 * 32
    return stored in (unsigned, signed)


def detect(head: bytes) -> Format | None:
    """The format of an object from its first bytes (up to SNIFF_BYTES), or None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if is_tar_header(head[:512]):
        return Format.TAR
    if len(head) >= 1024 and head[:1024] == bytes(1024):
        return None  # zeros: an empty tar is a directory of nothing, not worth showing so
    return None


def archive_stem(name: str) -> str | None:
    """`modeldir.tar` -> `modeldir`; None if the name has no archive suffix."""
    lower = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def compressed_stem(name: str) -> str | None:
    """`notes.txt.gz` -> `notes.txt`; None for archives and other names."""
    if archive_stem(name) is not None:
        return None
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None
