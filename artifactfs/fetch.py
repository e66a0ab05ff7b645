"""Blocks of object versions, from memory, the disk cache or the store.

One BlockFetcher per daemon. It guarantees:
- N concurrent readers of one missing block cause one GET (single flight);
- a block is fetched at exactly the version the handle pinned; the store
  raises StaleObject rather than return another version's bytes;
- read-ahead runs in background tasks, bounded by a limiter (memory in
  flight) and by the hot LRU's byte budget (memory at rest);
- blocks are written to the disk cache behind the reader (write-behind), so
  a disk slower than the network does not slow reads down: when more than
  `write_budget` bytes wait for the disk, further blocks are served without
  being cached (counted in `cache_writes_skipped`). A clean unmount drains
  the queue first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cachetools
import trio

from artifactfs.cache.blocks import BlockCache, BlockId
from artifactfs.errors import ArtifactFSError, StaleObject, StoreUnavailable
from artifactfs.metrics import Metrics
from artifactfs.readahead import SequentialDetector
from artifactfs.singleflight import SingleFlight
from artifactfs.store.base import DecodedVersion, ObjectStore, ObjectVersion

DecodedSource = Callable[[DecodedVersion, int], Awaitable[bytes]]

log = logging.getLogger(__name__)
FAILURE_MEMORY = 0.5  # seconds a failed block fetch is answered from memory


async def counted_get(
    store: ObjectStore, metrics: Metrics, version: ObjectVersion, start: int, length: int
) -> bytes:
    """A ranged GET, counted and timed: every GET the daemon sends goes through here,
    so the GET count, bytes and latency figures agree."""
    metrics.gets += 1
    began = time.perf_counter()
    data = await store.get_range(version, start, length)
    metrics.get_latency.observe(time.perf_counter() - began)
    metrics.bytes_fetched += len(data)
    return data


class _HotBlocks(cachetools.LRUCache[BlockId, bytes]):
    """The in-memory LRU of blocks, telling its owner which blocks it drops."""

    def __init__(self, maxsize: int, on_drop: Callable[[BlockId], Any]):
        super().__init__(maxsize=maxsize, getsizeof=len)
        self._on_drop = on_drop

    def popitem(self) -> tuple[BlockId, bytes]:
        bid, data = super().popitem()
        self._on_drop(bid)
        return bid, data


class BlockFetcher:
    def __init__(
        self,
        store: ObjectStore,
        disk: BlockCache,
        metrics: Metrics,
        block_size: int = 4 << 20,
        memory_budget: int = 96 << 20,
        max_prefetch: int = 8,
        write_budget: int = 64 << 20,
    ):
        self.store = store
        self.disk = disk
        self.metrics = metrics
        self.block_size = block_size
        self.max_prefetch = max_prefetch
        # Memory at rest: recently used and read-ahead blocks. Memory in flight is
        # bounded by the prefetch limiter plus the readers' own requests.
        self._hot = _HotBlocks(max(memory_budget, 2 * block_size), self._dropped)
        self._flights: SingleFlight[BlockId, bytes] = SingleFlight()
        # A block the store just failed to give: the kernel retries a failed
        # read-ahead page at once, and must not wait a second deadline for it.
        self._failed: dict[BlockId, tuple[float, ArtifactFSError]] = {}
        self._prefetching: set[BlockId] = set()
        self._prefetched: dict[BlockId, int] = {}  # fetched ahead, not read yet: bytes
        self._prefetch_limiter = trio.CapacityLimiter(max(1, max_prefetch))
        self._nursery: trio.Nursery | None = None
        # Makes blocks of decoded (decompressed) streams; set by the archive service.
        self.decoded_source: DecodedSource | None = None
        self.write_budget = write_budget
        self._pending_writes: dict[BlockId, bytes] = {}
        self._pending_bytes = 0
        self._drained = trio.Event()
        self._drained.set()

    def attach(self, nursery: trio.Nursery) -> None:
        """Give the fetcher a nursery for read-ahead tasks (none: no read-ahead)."""
        self._nursery = nursery

    def detector(self, window_bytes: int, kernel_read_ahead: int = 0) -> SequentialDetector:
        """A detector for one handle; the window never exceeds half the hot LRU,
        so blocks fetched ahead are still in memory when the reader gets there.
        The slack covers the kernel's own read-ahead, whose requests arrive out
        of order."""
        window = min(window_bytes, self._hot.maxsize // 2) // self.block_size
        slack = min(1 << 20, self.block_size) + kernel_read_ahead
        return SequentialDetector(max(0, window), slack=slack)

    def block_length(self, version: ObjectVersion, blockno: int) -> int:
        return max(0, min(self.block_size, version.size - blockno * self.block_size))

    async def read(
        self,
        version: ObjectVersion,
        off: int,
        size: int,
        detector: SequentialDetector | None = None,
        zero_copy: bool = False,
    ) -> bytes | memoryview:
        """Bytes [off, off+size) of `version`, clipped at its end.

        With `zero_copy`, a read within one block is a view of the cached block
        rather than a copy: the kernel reply path takes any buffer, and a
        sequential read otherwise copies every byte once more in Python."""
        end = min(off + size, version.size)
        if off >= end:
            return b""
        bs = self.block_size
        first, last = off // bs, (end - 1) // bs
        if detector is not None and self._nursery is not None:
            ahead = detector.observe(off, end - off)
            if ahead:
                nblocks = (version.size + bs - 1) // bs
                start = detector.scheduled_until
                if not last + 1 <= start <= last + 1 + ahead:
                    start = last + 1
                stop = min(last + 1 + ahead, nblocks)
                if start < stop:
                    self._schedule(version, range(start, stop))
                    detector.scheduled_until = stop
        if first == last:
            data = await self.block(version, first)
            if zero_copy:
                return memoryview(data)[off - first * bs : end - first * bs]
            return data[off - first * bs : end - first * bs]
        parts = []
        for b in range(first, last + 1):
            data = await self.block(version, b)
            lo = max(off, b * bs) - b * bs
            hi = min(end, (b + 1) * bs) - b * bs
            parts.append(data[lo:hi])
        return b"".join(parts)

    async def block(self, version: ObjectVersion, blockno: int) -> bytes:
        bid = (version.digest, blockno)
        data = self._hot.get(bid) or self._pending_writes.get(bid)
        if data is not None:
            self.metrics.hot_hits += 1
            if bid in self._prefetched:
                self.metrics.readahead_used_bytes += self._prefetched.pop(bid)
                self.metrics.prefetch_used += 1
            return data
        failed = self._failed.get(bid)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY:
            raise type(failed[1])(str(failed[1]))
        return await self._flights.run(bid, lambda: self._load_and_keep(version, blockno, bid))

    async def _load_and_keep(self, version: ObjectVersion, blockno: int, bid: BlockId) -> bytes:
        """The one fetch of a missing block: into the hot LRU, errors counted once."""
        try:
            data = await self._load(version, blockno, bid)
        except ArtifactFSError as exc:
            self.metrics.fetch_errors += 1
            if isinstance(exc, StaleObject):
                self.metrics.stale_reads += 1
            if isinstance(exc, StoreUnavailable):
                if len(self._failed) > 1024:
                    self._failed.clear()
                self._failed[bid] = (time.monotonic(), exc)
            raise
        self._failed.pop(bid, None)
        self._hot[bid] = data
        return data

    async def _load(self, version: ObjectVersion, blockno: int, bid: BlockId) -> bytes:
        length = self.block_length(version, blockno)
        data = await self.disk.get(bid, length)
        if data is not None:
            self.metrics.disk_hits += 1
            return data
        self.metrics.misses += 1
        if isinstance(version, DecodedVersion):
            if self.decoded_source is None:
                raise ArtifactFSError(f"{version.key}: no decoder for {version.codec}")
            return await self.decoded_source(version, blockno)  # cached by the decoder
        data = await counted_get(self.store, self.metrics, version, blockno * self.block_size,
                                 length)  # fmt: skip
        if self._nursery is None:
            await self.disk.put(bid, data)
        else:
            self._write_behind(bid, data)
        return data

    def _write_behind(self, bid: BlockId, data: bytes) -> None:
        if bid in self._pending_writes:
            return
        assert self._nursery is not None
        if self._pending_bytes + len(data) > self.write_budget:
            self.metrics.cache_writes_skipped += 1
            return
        self._pending_writes[bid] = data
        self._pending_bytes += len(data)
        if self._drained.is_set():
            self._drained = trio.Event()
        self._nursery.start_soon(self._write_one, bid, data)

    async def _write_one(self, bid: BlockId, data: bytes) -> None:
        try:
            await self.disk.put(bid, data)
        finally:
            del self._pending_writes[bid]
            self._pending_bytes -= len(data)
            if not self._pending_writes:
                self._drained.set()

    def _dropped(self, bid: BlockId) -> None:
        """A block left memory; if it was fetched ahead and never read, it was wasted."""
        wasted = self._prefetched.pop(bid, 0)
        self.metrics.readahead_wasted_bytes += wasted

    async def drain(self) -> None:
        """Wait until every block handed to the disk cache is written."""
        await self._drained.wait()

    def _schedule(self, version: ObjectVersion, blocknos: range) -> None:
        assert self._nursery is not None
        for b in blocknos:
            bid = (version.digest, b)
            if bid in self._hot or bid in self._flights or bid in self._prefetching:
                continue
            if len(self._prefetching) >= self.max_prefetch:
                return
            self._prefetching.add(bid)
            self.metrics.prefetch_started += 1
            self._nursery.start_soon(self._prefetch, version, b, bid)

    async def _prefetch(self, version: ObjectVersion, blockno: int, bid: BlockId) -> None:
        try:
            async with self._prefetch_limiter:
                if bid not in self._hot:
                    data = await self.block(version, blockno)
                    self.metrics.readahead_bytes += len(data)
                    if bid in self._hot:  # not already read and dropped
                        self._prefetched[bid] = len(data)
        except ArtifactFSError as exc:
            log.debug("read-ahead of %s block %d failed: %s", version.key, blockno, exc)
        except Exception:  # a bug must not take the daemon's nursery down
            log.exception("read-ahead of %s block %d crashed", version.key, blockno)
        finally:
            self._prefetching.discard(bid)
