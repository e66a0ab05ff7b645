"""Archive views for the filesystem model: sniff, index once, serve members.

This is the only place that joins the archive package (formats, scanners,
indexes) to the store. Scanners run in a worker thread and read through a
RangeFile whose fetches are small ranged GETs run back on the trio loop, so
listing a 1 GiB tar with a few big members transfers kilobytes.

Indexes are files under CACHE_DIR/index named by the archive version's
digest: built once per version, reused by every later mount; a damaged or
foreign one is deleted and rebuilt.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cachetools
import trio

from artifactfs.archive.detect import SNIFF_BYTES, Format, detect
from artifactfs.archive.index import ArchiveIndex, IndexUnusable, build_index
from artifactfs.archive.rangefile import RangeFile
from artifactfs.archive.tar import scan_tar
from artifactfs.errors import ArtifactFSError
from artifactfs.metrics import Metrics
from artifactfs.store.base import ObjectStore, ObjectVersion

log = logging.getLogger(__name__)

SUPPORTED = {Format.TAR}


class _Build:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.index: ArchiveIndex | None = None
        self.error: ArtifactFSError | None = None


class ArchiveService:
    def __init__(self, store: ObjectStore, cache_dir: Path, metrics: Metrics):
        self.store = store
        self.index_dir = cache_dir / "index"
        self.metrics = metrics
        self._formats: cachetools.LRUCache[bytes, Format | None] = cachetools.LRUCache(100_000)
        self._open: cachetools.LRUCache[bytes, ArchiveIndex] = cachetools.LRUCache(256)
        self._builds: dict[bytes, _Build] = {}
        self._sniff_limiter = trio.CapacityLimiter(16)

    def index_path(self, version: ObjectVersion) -> Path:
        return self.index_dir / f"{version.digest.hex()}.sqlite"

    async def sniff(self, version: ObjectVersion) -> Format | None:
        """The archive format of `version`, from its first bytes; remembered per version."""
        if version.digest in self._formats:
            return self._formats[version.digest]
        if self.index_path(version).exists():
            fmt: Format | None = Format.TAR
        elif version.size < 512:
            fmt = None
        else:
            async with self._sniff_limiter:
                head = await self.store.get_range(version, 0, min(SNIFF_BYTES, version.size))
            fmt = detect(head)
        self._formats[version.digest] = fmt
        return fmt

    async def index(self, version: ObjectVersion, mtime_ns: int = 0) -> ArchiveIndex:
        """The member index of `version`: open, load from disk, or build (once).

        `mtime_ns` (the object's) dates the directories an archive implies
        but does not contain.
        """
        key = version.digest
        idx = self._open.get(key)
        if idx is not None:
            return idx
        build = self._builds.get(key)
        if build is None:
            build = _Build()
            self._builds[key] = build
            try:
                build.index = await self._load_or_build(version, mtime_ns)
                self._open[key] = build.index
            except ArtifactFSError as exc:
                build.error = exc
                raise
            finally:
                del self._builds[key]
                build.done.set()
            return build.index
        await build.done.wait()
        if build.index is None:
            raise type(build.error or ArtifactFSError)(str(build.error or "index build failed"))
        return build.index

    async def _load_or_build(self, version: ObjectVersion, mtime_ns: int) -> ArchiveIndex:
        path = self.index_path(version)
        identity = f"{version.bucket}\0{version.key}\0{version.etag}\0{version.size}"
        if path.exists():
            try:
                idx = await trio.to_thread.run_sync(ArchiveIndex, path, identity)
                self.metrics.indexes_loaded += 1
                return idx
            except IndexUnusable as exc:
                log.warning("index of %s unusable (%s); rebuilding", version.key, exc)
                path.unlink(missing_ok=True)
        token = trio.lowlevel.current_trio_token()

        def fetch(offset: int, length: int) -> bytes:
            return trio.from_thread.run(self.store.get_range, version, offset, length,
                                        trio_token=token)  # fmt: skip

        def build() -> tuple[int, int]:
            f = RangeFile(fetch, version.size)
            members = scan_tar(f, version.size, f"{version.bucket}/{version.key}")
            count = build_index(path, identity, members, mtime_ns)
            return count, f.bytes_fetched

        count, fetched = await trio.to_thread.run_sync(build)
        self.metrics.indexes_built += 1
        log.info("indexed %s: %d members, %d bytes read", version.key, count, fetched)
        return await trio.to_thread.run_sync(ArchiveIndex, path, identity)
