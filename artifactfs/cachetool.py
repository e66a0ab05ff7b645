"""`artifactfs cache stats|verify|prune|clear`: the block cache directory, offline.

A cache directory belongs to one daemon at a time (its `lock` file). `stats`
reads and is safe any time. `prune` and `clear` take the same lock, so they
refuse clearly while a daemon serves from the directory, and a daemon that
starts meanwhile is refused in turn: no block disappears under a reader.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from artifactfs.cache import blockfile
from artifactfs.cache.blocks import BlockCache, block_files, take_lock
from artifactfs.errors import CacheInUse, ConfigError
from artifactfs.options import default_cache_base


@dataclass(frozen=True, slots=True)
class CacheUsage:
    path: Path
    blocks: int
    block_bytes: int
    indexes: int
    index_bytes: int
    in_use_by: str | None  # pid of the daemon holding it


def find_cache_dirs(paths: list[Path]) -> list[Path]:
    """The given directories, or every cache directory under the default base."""
    if paths:
        for p in paths:
            if not (p / "lock").exists() and not (p / "blocks").is_dir():
                raise ConfigError(f"{p} is not an artifactfs cache directory")
        return paths
    base = default_cache_base()
    if not base.is_dir():
        return []
    return sorted(d for d in base.iterdir() if (d / "lock").exists() or (d / "blocks").is_dir())


def holder(path: Path) -> str | None:
    """The pid of the daemon using this cache directory, if one does."""
    try:
        fd = os.open(path / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return take_lock(fd, shared=True)
    finally:
        os.close(fd)


def _files(top: Path) -> Iterator[os.DirEntry[str]]:
    if not top.is_dir():
        return
    for sub in os.scandir(top):
        if sub.is_dir(follow_symlinks=False):
            yield from _files(Path(sub.path))
        elif sub.is_file(follow_symlinks=False):
            yield sub


def usage(path: Path) -> CacheUsage:
    blocks = [entry.stat().st_size for _, entry in block_files(path / "blocks")]
    indexes = [e.stat().st_size for e in _files(path / "index")]
    return CacheUsage(path, len(blocks), sum(blocks), len(indexes), sum(indexes), holder(path))


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the directory's lock as a daemon would, or refuse with the holder's pid."""
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        pid = take_lock(fd)
        if pid is not None:
            raise CacheInUse(
                f"{path} is in use by artifactfs pid {pid}; unmount it first "
                "(or let the daemon's --cache-size keep it in bounds)"
            ) from None
        yield
    finally:
        os.close(fd)


def verify(path: Path) -> tuple[int, list[Path]]:
    """Check every block file against its header (name, length, CRC-32).

    Returns (good blocks, bad files). A daemon discards a bad one on first
    read; temporary files of writes cut short are never served, not counted."""
    good, bad = 0, []
    for (digest, blockno), entry in block_files(path / "blocks"):
        raw = Path(entry.path).read_bytes()
        try:
            length = blockfile.HEADER.unpack_from(raw)[2]  # what the header claims
            blockfile.decode(raw, digest, blockno, length)
            good += 1
        except (blockfile.CorruptBlock, struct.error):
            bad.append(Path(entry.path))
    return good, bad


def prune(path: Path, to_bytes: int) -> tuple[int, int]:
    """Remove least recently written blocks until at most `to_bytes` remain.

    Returns (blocks removed, bytes removed)."""
    with exclusive(path):
        cache = BlockCache(path, max(to_bytes, 0), low_water=1.0)
        before = usage(path)
        cache.load_index()  # evicts down to the limit, oldest first
        after = usage(path)
    return before.blocks - after.blocks, before.block_bytes - after.block_bytes


def clear(path: Path) -> tuple[int, int]:
    """Remove every block and archive index; returns (files removed, bytes removed)."""
    with exclusive(path):
        before = usage(path)
        for sub in ("blocks", "index"):
            shutil.rmtree(path / sub, ignore_errors=True)
    return before.blocks + before.indexes, before.block_bytes + before.index_bytes
