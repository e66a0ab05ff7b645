"""The persistent block cache: fixed-size blocks of object versions on disk.

Rules (see docs/ARCHITECTURE.md):
- a block is written under a temporary name and renamed, so a reader never
  sees a half-written file; its header is verified on every read from disk;
- the size limit is enforced when a block is added: least recently used
  blocks are removed down to a low-water mark, skipping pinned blocks;
- the index lives in memory and is rebuilt from the directory at start, so
  the cache survives restarts;
- a full disk is not an error: the block is served uncached, with one warning.

The index is touched only from the trio thread; file I/O runs in workers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from artifactfs.cache import blockfile
from artifactfs.errors import CacheInUse

log = logging.getLogger(__name__)

BlockId = tuple[bytes, int]  # (version digest, block number)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
DISK_FULL_WARNING_INTERVAL = 300.0  # one warning, not one per block, while the disk stays full


@dataclass(slots=True)
class CacheStats:
    blocks: int
    bytes: int
    limit: int
    evicted_blocks: int
    corrupt_blocks: int
    write_failures: int


def take_lock(fd: int, shared: bool = False) -> str | None:
    """Lock a cache directory's lock file; None once held, else the holder's pid."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    return None


def block_files(
    blocks_dir: Path, drop_temporaries: bool = False
) -> Iterator[tuple[BlockId, os.DirEntry[str]]]:
    """Every block file under `blocks_dir` with the block its name says it holds.

    Temporary files (writes cut short; removed with `drop_temporaries`) and
    names that are not blocks are passed over."""
    if not blocks_dir.is_dir():
        return
    for sub in os.scandir(blocks_dir):
        if not sub.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(sub.path):
            hexd, _, num = entry.name.partition(".")
            if ".tmp" in entry.name:
                if drop_temporaries:
                    _unlink_quietly(entry.path)
                continue
            try:
                yield (bytes.fromhex(hexd), int(num)), entry
            except ValueError:
                continue


def lock_cache_dir(path: Path) -> int:
    """Create the cache directory (0700) and hold its lock for this process's life.

    Two daemons evicting each other's blocks would break the size limit and
    the LRU order, so a second one is refused with the holder's pid.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    holder = take_lock(fd)
    if holder is not None:
        os.close(fd)
        raise CacheInUse(
            f"cache directory {path} is in use by another artifactfs (pid {holder}); "
            "give each mount its own --cache-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class BlockCache:
    """Blocks on disk with an LRU index and a hard size limit."""

    def __init__(self, root: Path, limit_bytes: int, low_water: float = 0.9, io_threads: int = 4):
        self.root = root
        self.limit = limit_bytes
        self.low_water = int(limit_bytes * low_water)
        self._blocks_dir = root / "blocks"
        self._index: OrderedDict[BlockId, int] = OrderedDict()
        self._pins: Counter[BlockId] = Counter()
        self._total = 0
        self._io = trio.CapacityLimiter(io_threads)
        self._disk_full_warned_at = -DISK_FULL_WARNING_INTERVAL
        self.evicted_blocks = 0
        self.corrupt_blocks = 0
        self.write_failures = 0

    # ----------------------------------------------------------------- layout
    def path_of(self, block: BlockId) -> Path:
        hexd = block[0].hex()
        return self._blocks_dir / hexd[:2] / f"{hexd}.{block[1]}"

    def load_index(self) -> None:
        """Rebuild the index from the directory, oldest first; drop temp leftovers."""
        self._blocks_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        found: list[tuple[int, BlockId, int]] = []
        for block, entry in block_files(self._blocks_dir, drop_temporaries=True):
            try:
                st = entry.stat()
            except OSError:
                continue
            found.append((st.st_mtime_ns, block, st.st_size))
        found.sort()
        self._index.clear()
        self._total = 0
        for _, block, size in found:
            self._index[block] = size
            self._total += size
        log.debug("block cache %s: %d blocks, %d bytes", self.root, len(found), self._total)
        if self._total > self.limit:
            _unlink_all([path for _, path in self._select_victims()])

    # ----------------------------------------------------------------- access
    def __contains__(self, block: BlockId) -> bool:
        return block in self._index

    async def get(self, block: BlockId, length: int) -> bytes | None:
        """The block's data, verified; None when absent or found corrupt (then dropped)."""
        if block not in self._index:
            return None
        self._index.move_to_end(block)
        self._pins[block] += 1
        path = self.path_of(block)
        try:
            header, data = await trio.to_thread.run_sync(_read_file, path, length, limiter=self._io)
        except FileNotFoundError:
            self._forget(block)
            return None
        except OSError as exc:
            log.warning("cannot read cached block %s: %s; fetching it again", path, exc)
            self._forget(block)
            return None
        finally:
            self._unpin(block)
        try:
            blockfile.verify(header, data, block[0], block[1], length)
            return data
        except blockfile.CorruptBlock as exc:
            self.corrupt_blocks += 1
            log.warning("corrupt cached block %s (%s); discarded, fetching it again", path, exc)
            self._forget(block)
            _unlink_quietly(path)
            return None

    async def put(self, block: BlockId, data: bytes) -> bool:
        """Store a block; False if it could not be written (it is then simply not cached)."""
        if block in self._index:
            self._index.move_to_end(block)
            return True
        path = self.path_of(block)
        try:
            await trio.to_thread.run_sync(_write_file, path, block, data, limiter=self._io)
        except OSError as exc:
            self.write_failures += 1
            if exc.errno in _DISK_FULL:
                now = time.monotonic()
                if now - self._disk_full_warned_at > DISK_FULL_WARNING_INTERVAL:
                    log.warning(
                        "cache disk full at %s: serving reads uncached until space frees up",
                        self.root,
                    )
                    self._disk_full_warned_at = now
            else:
                log.warning("cannot write cached block %s: %s", path, exc.strerror or exc)
            return False
        size = blockfile.file_size(len(data))
        if block in self._index:  # raced with another writer of the same block
            return True
        self._index[block] = size
        self._total += size
        if self._total > self.limit:
            victims = self._select_victims()
            if victims:
                await trio.to_thread.run_sync(_unlink_all, [p for _, p in victims])
        return True

    def _select_victims(self) -> list[tuple[BlockId, Path]]:
        """Take least recently used, unpinned blocks out of the index down to low water."""
        victims: list[tuple[BlockId, Path]] = []
        for block in list(self._index):
            if self._total <= self.low_water:
                break
            if self._pins[block]:
                continue
            victims.append((block, self.path_of(block)))
            self._forget(block)
            self.evicted_blocks += 1
        return victims

    def _forget(self, block: BlockId) -> None:
        size = self._index.pop(block, None)
        if size is not None:
            self._total -= size

    def _unpin(self, block: BlockId) -> None:
        self._pins[block] -= 1
        if self._pins[block] <= 0:
            del self._pins[block]

    def stats(self) -> CacheStats:
        return CacheStats(
            blocks=len(self._index),
            bytes=self._total,
            limit=self.limit,
            evicted_blocks=self.evicted_blocks,
            corrupt_blocks=self.corrupt_blocks,
            write_failures=self.write_failures,
        )


def _read_file(path: Path, length: int) -> tuple[bytes, bytes]:
    """Header and data in two reads (no copy of the data); size checked against the header."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size != blockfile.file_size(length):
            return b"", b""  # truncated or extended: verify() reports it as corrupt
        header = os.pread(fd, blockfile.HEADER_SIZE, 0)
        data = os.pread(fd, length, blockfile.DATA_OFFSET)
        return header, data
    finally:
        os.close(fd)


_direct_io = {"ok": hasattr(os, "O_DIRECT")}
_buffers = threading.local()


def _aligned_buffer(size: int) -> mmap.mmap:
    """A page-aligned buffer reused by this thread (O_DIRECT needs alignment)."""
    buf: mmap.mmap | None = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < size:
        buf = mmap.mmap(-1, size)
        _buffers.buf = buf
    return buf


def _write_file(path: Path, block: BlockId, data: bytes) -> None:
    """Write to a unique temp name, then rename: readers see whole blocks or none.

    O_DIRECT skips the copy into the page cache, which costs a third of the
    daemon's CPU on a cold sequential read otherwise; filesystems without it
    (tmpfs) get ordinary buffered writes.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident():x}.tmp")
    pieces = blockfile.pieces(block[0], block[1], data)
    try:
        if _direct_io["ok"]:
            try:
                _write_direct(tmp, pieces)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _direct_io["ok"] = False
                log.debug("O_DIRECT not supported under %s; using buffered writes", path.parent)
        if not _direct_io["ok"]:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, memoryview(b"".join(pieces)))
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


_DIRECT_CHUNK = 1 << 20


def _write_direct(tmp: Path, pieces: list[bytes]) -> None:
    """Copy through a 1 MiB page-aligned buffer per thread, written at aligned offsets."""
    buf = _aligned_buffer(_DIRECT_CHUNK)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_DIRECT
    fd = os.open(tmp, flags, 0o600)
    try:
        offset = 0
        fill = 0
        for piece in pieces:
            view = memoryview(piece)
            while view:
                n = min(len(view), _DIRECT_CHUNK - fill)
                buf[fill : fill + n] = view[:n]
                fill += n
                view = view[n:]
                if fill == _DIRECT_CHUNK:
                    _pwrite_all(fd, memoryview(buf), offset)
                    offset += fill
                    fill = 0
        if fill:  # the pieces are page-padded, so this is a whole number of pages
            _pwrite_all(fd, memoryview(buf)[:fill], offset)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        _unlink_quietly(p)
