"""Archive views for the filesystem model: sniff, index once, serve members.

This is the only place that joins the archive package (formats, scanners,
indexes) to the store. Scanners run in a worker thread and read through a
RangeFile whose fetches are small ranged GETs run back on the trio loop, so
listing a 1 GiB tar with a few big members transfers kilobytes.

Indexes are files under CACHE_DIR/index named by the archive version's
digest: built once per version, reused by every later mount; a damaged or
foreign one is deleted and rebuilt.

A compressed tar is decoded once, sequentially: the same pass builds the
index and puts the decoded stream into the block cache as the blocks of a
DecodedVersion. A decoded block that was evicted is made again: for gzip
from the nearest seek point saved by that pass (the compressed bytes it
needs fetched in parallel first), for the other codecs by decoding from the
start up to it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cachetools
import trio
import zstandard

from artifactfs.archive.codecs import (
    COMPRESSED,
    DECODE_ERRORS,
    GZIP_READ_BUFFER,
    InflateReader,
    open_at_checkpoint,
    open_decoder,
    save_checkpoints,
)
from artifactfs.archive.detect import SNIFF_BYTES, Format, detect
from artifactfs.archive.gzindex import (
    SeekPoints,
    SeekPointsDamaged,
    convert_export,
    read_seek_points,
)
from artifactfs.archive.index import ArchiveIndex, IndexUnusable, build_index
from artifactfs.archive.members import Member
from artifactfs.archive.rangefile import Fetch, RangeFile, ReadAhead
from artifactfs.archive.stream import BlockTee, DecodeLimit
from artifactfs.archive.tar import scan_tar
from artifactfs.archive.zip import scan_zip
from artifactfs.cache.blocks import BlockCache
from artifactfs.errors import ArtifactFSError, NotFound, StaleObject
from artifactfs.fetch import counted_get
from artifactfs.metrics import Metrics
from artifactfs.singleflight import SingleFlight
from artifactfs.store.base import DecodedVersion, ObjectStore, ObjectVersion, decoded_digest

log = logging.getLogger(__name__)

SUPPORTED = {Format.TAR, Format.ZIP} | COMPRESSED
SIDECAR_SUFFIX = ".afsidx"  # <archive key>.afsidx: a zstd-compressed copy of the SQLite index
MAX_SIDECAR = 2 << 30


def sidecar_key(key: str) -> str:
    return key + SIDECAR_SUFFIX


_SEQUENTIAL_WINDOW = 8 << 20  # compressed bytes fetched per request while decoding
_SPAN_PART = 2 << 20  # a compressed span is fetched in parallel GETs of this size


def _span_fetch(span: bytes, span_start: int, fetch: Fetch) -> Fetch:
    """Ranges within a prefetched span come from memory, the rest from `fetch`."""
    span_end = span_start + len(span)

    def get(offset: int, length: int) -> bytes:
        if not span_start <= offset < span_end:
            return fetch(offset, length)
        head = span[offset - span_start : offset - span_start + length]
        if len(head) == length:
            return head
        return head + fetch(span_end, length - len(head))

    return get


def _load_seek_points(path: Path) -> SeekPoints:
    """Read a seek-point file; one saved by an older artifactfs as indexed_gzip's raw
    export (`.gzidx`) is converted first."""
    legacy = path.with_suffix(".gzidx")
    if not path.exists() and legacy.exists():
        tmp = path.with_name(path.name + ".tmp")
        convert_export(legacy, tmp)
        tmp.replace(path)
        legacy.unlink()
    return read_seek_points(path)


class CorruptArchive(ArtifactFSError):
    """The archive's compressed stream is damaged: what decoded before stays readable."""


class ArchiveService:
    def __init__(
        self,
        store: ObjectStore,
        cache_dir: Path,
        metrics: Metrics,
        disk: BlockCache | None = None,
        block_size: int = 8 << 20,
        max_decoded: int = 64 << 30,
        publish_index: bool = False,
    ):
        self.store = store
        self.index_dir = cache_dir / "index"
        self.metrics = metrics
        self.disk = disk
        self.block_size = block_size
        self.max_decoded = max_decoded
        self.publish_index = publish_index
        self._decodes: dict[bytes, trio.Lock] = {}
        self._formats: cachetools.LRUCache[bytes, Format | None] = cachetools.LRUCache(100_000)
        self._open: cachetools.LRUCache[bytes, ArchiveIndex] = cachetools.LRUCache(256)
        self._builds: SingleFlight[bytes, ArchiveIndex] = SingleFlight()
        self._sniff_limiter = trio.CapacityLimiter(16)
        self._seek_points: cachetools.LRUCache[Path, SeekPoints] = cachetools.LRUCache(64)

    def index_path(self, version: ObjectVersion) -> Path:
        return self.index_dir / f"{version.digest.hex()}.sqlite"

    async def sniff(self, version: ObjectVersion) -> Format | None:
        """The archive format of `version`, from its first bytes; remembered per version."""
        if version.digest in self._formats:
            return self._formats[version.digest]
        if self.index_path(version).exists():
            try:
                idx = await self.index(version)
                fmt = Format(idx.meta["codec"]) if idx.meta.get("codec") else Format.TAR
                self._formats[version.digest] = fmt
                return fmt
            except ArtifactFSError:
                pass  # a broken index: tell by content, rebuild later
        if version.size < 16:
            self._formats[version.digest] = None
            return None
        async with self._sniff_limiter:
            head = await self.store.get_range(version, 0, min(SNIFF_BYTES, version.size))
        fmt: Format | None = detect(head)
        self._formats[version.digest] = fmt
        return fmt

    def member_content(
        self, archive: ObjectVersion, index: ArchiveIndex, member: Member
    ) -> tuple[ObjectVersion, int]:
        """The version a member's bytes are read from, and the member's offset in it."""
        if member.codec == "deflate":
            codec = f"deflate:{member.offset}:{member.csize}"
            decoded = DecodedVersion(archive.bucket, archive.key, archive.etag, member.size,
                                     codec=codec, source_digest=archive.digest,
                                     source_size=archive.size)  # fmt: skip
            return decoded, 0
        return self.content_version(archive, index), member.offset

    def content_version(self, archive: ObjectVersion, index: ArchiveIndex) -> ObjectVersion:
        """The version member offsets refer to: the object, or its decoded stream."""
        codec = index.meta.get("codec", "")
        if not codec:
            return archive
        return DecodedVersion(archive.bucket, archive.key, archive.etag,
                              int(index.meta["decoded_size"]), codec=codec,
                              source_digest=archive.digest, source_size=archive.size)  # fmt: skip

    async def decoded_version(self, version: ObjectVersion, codec: str) -> DecodedVersion:
        """A single compressed file as its decoded stream (decoded once to learn its size)."""
        idx = await self.index(version, stream=True)
        return DecodedVersion(version.bucket, version.key, version.etag,
                              int(idx.meta["decoded_size"]), codec=codec,
                              source_digest=version.digest, source_size=version.size)  # fmt: skip

    async def index(
        self, version: ObjectVersion, mtime_ns: int = 0, stream: bool = False
    ) -> ArchiveIndex:
        """The member index of `version`: open, load from disk, or build (once).

        `mtime_ns` (the object's) dates the directories an archive implies
        but does not contain.
        """
        idx = self._open.get(version.digest)
        if idx is not None:
            return idx
        return await self._builds.run(
            version.digest, lambda: self._load_build_keep(version, mtime_ns, stream)
        )

    async def _load_build_keep(
        self, version: ObjectVersion, mtime_ns: int, stream: bool
    ) -> ArchiveIndex:
        idx = await self._load_or_build(version, mtime_ns, stream)
        self._open[version.digest] = idx
        return idx

    async def _load_or_build(
        self, version: ObjectVersion, mtime_ns: int, stream: bool = False
    ) -> ArchiveIndex:
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
        idx = None if stream else await self._from_sidecar(version, path, identity)
        if idx is not None:
            return idx
        fmt = await self.sniff(version)
        label = f"{version.bucket}/{version.key}"
        if stream:
            if fmt not in COMPRESSED:
                raise CorruptArchive(f"{label}: not a compressed file")
            assert fmt is not None
            build = self._stream_builder(version, fmt, path, identity, label)
        elif fmt in COMPRESSED:
            assert fmt is not None
            build = self._compressed_builder(version, fmt, path, identity, mtime_ns, label)
        else:
            build = self._range_builder(version, fmt, path, identity, mtime_ns, label)
        count, fetched = await trio.to_thread.run_sync(build)
        self.metrics.indexes_built += 1
        log.info("indexed %s: %d members, %d bytes read", version.key, count, fetched)
        if self.publish_index:
            await self._publish(version, path)
        return await trio.to_thread.run_sync(ArchiveIndex, path, identity)

    async def _from_sidecar(
        self, version: ObjectVersion, path: Path, identity: str
    ) -> ArchiveIndex | None:
        """A valid sidecar index saves the scan; a stale or corrupt one is ignored (warning)."""
        key = sidecar_key(version.key)
        try:
            blob = await self.store.get_object(key, MAX_SIDECAR)
        except NotFound:
            return None
        except ArtifactFSError as exc:
            log.warning("sidecar %s not read (%s); indexing the archive instead", key, exc)
            return None

        def install() -> ArchiveIndex:
            tmp = path.with_name(path.name + ".sidecar.tmp")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob))
                with open(tmp, "wb") as f:
                    copied = 0
                    while chunk := reader.read(1 << 20):
                        copied += len(chunk)
                        if copied > MAX_SIDECAR:
                            raise IndexUnusable("decodes to more than the sidecar limit")
                        f.write(chunk)
                idx = ArchiveIndex(tmp, identity)  # refuses another version's index
                idx.check_paths()  # and names no scan of ours would have produced
                idx.close()
                tmp.replace(path)
                return ArchiveIndex(path, identity)
            except (IndexUnusable, zstandard.ZstdError, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise IndexUnusable(str(exc)) from None

        try:
            idx = await trio.to_thread.run_sync(install)
        except IndexUnusable as exc:
            log.warning("sidecar %s ignored (stale or corrupt: %s)", key, exc)
            return None
        self.metrics.sidecars_used += 1
        log.info("index of %s taken from its sidecar %s", version.key, key)
        return idx

    async def _publish(self, version: ObjectVersion, path: Path) -> None:
        key = sidecar_key(version.key)

        def pack() -> bytes:
            return zstandard.ZstdCompressor(level=3).compress(path.read_bytes())

        try:
            await self.store.put_object(key, await trio.to_thread.run_sync(pack))
        except ArtifactFSError as exc:
            log.warning("cannot publish the index of %s as %s: %s", version.key, key, exc)
            return
        log.info("published the index of %s as %s", version.key, key)

    def _fetcher(self, version: ObjectVersion) -> Fetch:
        """Ranged GETs of `version`, callable from a worker thread."""
        token = trio.lowlevel.current_trio_token()

        def fetch(offset: int, length: int) -> bytes:
            return trio.from_thread.run(counted_get, self.store, self.metrics, version, offset,
                                        length, trio_token=token)  # fmt: skip

        return fetch

    def _block_sink(self, source: ObjectVersion, codec: str) -> Callable[[int, bytes], None]:
        """Puts decoded blocks into the disk cache, from a worker thread."""
        token = trio.lowlevel.current_trio_token()
        digest = decoded_digest(source.digest, codec)
        disk = self.disk

        def put(blockno: int, data: bytes) -> None:
            if disk is not None:
                trio.from_thread.run(disk.put, (digest, blockno), data, trio_token=token)

        return put

    def _range_builder(
        self, version: ObjectVersion, fmt: Format | None, path: Path, identity: str,
        mtime_ns: int, label: str,
    ) -> Callable[[], tuple[int, int]]:  # fmt: skip
        """Tar and zip: members are ranges of the object, found by reading headers only."""
        fetch = self._fetcher(version)
        scan = scan_zip if fmt is Format.ZIP else scan_tar

        def build() -> tuple[int, int]:
            f = RangeFile(fetch, version.size)
            members = scan(f, version.size, label)  # type: ignore[arg-type]
            return build_index(path, identity, members, mtime_ns), f.bytes_fetched

        return build

    def _compressed_builder(
        self, version: ObjectVersion, fmt: Format, path: Path, identity: str, mtime_ns: int,
        label: str,
    ) -> Callable[[], tuple[int, int]]:  # fmt: skip
        fetch = self._fetcher(version)
        put = self._block_sink(version, fmt.value)

        def one_pass(checkpoints: bool) -> tuple[list[Member], BlockTee, RangeFile, str]:
            ahead = ReadAhead(fetch, version.size)
            raw = RangeFile(ahead, version.size, window=_SEQUENTIAL_WINDOW)
            decoder = open_decoder(fmt, raw, checkpoints)  # type: ignore[arg-type]
            tee = BlockTee(decoder, self.block_size, put, self.max_decoded)
            members: list[Member] = []
            problem = ""
            try:
                members.extend(scan_tar(tee, -1, label, stream=True))  # type: ignore[arg-type]
                tee.drain()
                if checkpoints:
                    self._keep_checkpoints(decoder, version)
            except DecodeLimit as exc:
                tee.close_partial()
                problem = f"{exc}; members past it are not shown"
            except DECODE_ERRORS as exc:
                tee.close_partial()  # what decoded before the damage is good
                problem = (f"corrupt {fmt.value} stream at decoded byte {tee.position} ({exc}); "
                           "members past it are not shown")  # fmt: skip
            finally:
                ahead.close()
            return members, tee, raw, problem

        def build() -> tuple[int, int]:
            members, tee, raw, problem = one_pass(checkpoints=True)
            fetched = raw.bytes_fetched
            if problem.startswith("corrupt") and fmt is Format.GZIP:
                # indexed_gzip decodes ahead and loses the good data just before the
                # damage; the plain decoder salvages it (damaged archives only).
                members, tee, raw, problem = one_pass(checkpoints=False)
                fetched += raw.bytes_fetched
            if problem:
                log.warning("%s: %s", label, problem)
            meta = {"codec": fmt.value, "decoded_size": str(tee.position)}
            count = build_index(path, identity, members, mtime_ns, meta, tee.position)
            return count, fetched

        return build

    def _stream_builder(
        self, version: ObjectVersion, fmt: Format, path: Path, identity: str, label: str
    ) -> Callable[[], tuple[int, int]]:
        """Decode a single compressed file once: blocks into the cache, its size into an index."""
        fetch = self._fetcher(version)
        put = self._block_sink(version, fmt.value)

        def build() -> tuple[int, int]:
            ahead = ReadAhead(fetch, version.size)
            raw = RangeFile(ahead, version.size, window=_SEQUENTIAL_WINDOW)
            decoder = open_decoder(fmt, raw, checkpoints=True)  # type: ignore[arg-type]
            tee = BlockTee(decoder, self.block_size, put, self.max_decoded)
            try:
                tee.drain()
            except (DecodeLimit, *DECODE_ERRORS) as exc:
                tee.close_partial()
                log.warning("%s: %s stream cut at decoded byte %d (%s)", label, fmt.value,
                            tee.position, exc)  # fmt: skip
            finally:
                ahead.close()
            self._keep_checkpoints(decoder, version)
            meta = {"codec": fmt.value, "decoded_size": str(tee.position), "kind": "stream"}
            build_index(path, identity, [], 0, meta)
            return 0, raw.bytes_fetched

        return build

    def checkpoints_path(self, source_digest: bytes) -> Path:
        return self.index_dir / f"{source_digest.hex()}.seekpoints"

    def _keep_checkpoints(self, decoder: BinaryIO, version: ObjectVersion) -> None:
        path = self.checkpoints_path(version.digest)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if save_checkpoints(decoder, tmp):
                tmp.replace(path)
        except (OSError, *DECODE_ERRORS) as exc:
            log.warning("%s: seek points not saved (%s)", version.key, exc)
            tmp.unlink(missing_ok=True)

    async def decoded_block(self, version: DecodedVersion, blockno: int) -> bytes:
        """A block of a decoded stream that is not in the cache: decode up to it again."""
        lock = self._decodes.setdefault(version.digest, trio.Lock())
        async with lock:  # one decode per stream at a time; later waiters find it cached
            if self.disk is not None:
                length = max(0, min(self.block_size, version.size - blockno * self.block_size))
                cached = await self.disk.get((version.digest, blockno), length)
                if cached is not None:
                    return cached
            return await self._redecode(version, blockno)

    async def _points_of(self, version: DecodedVersion) -> SeekPoints | None:
        """The checked point table of a gzip stream's seek points, remembered; None
        when there is none or it is damaged (then deleted: decode from the start)."""
        if version.codec != Format.GZIP.value:
            return None
        path = self.checkpoints_path(version.source_digest)
        if path not in self._seek_points:
            try:
                self._seek_points[path] = await trio.to_thread.run_sync(_load_seek_points, path)
            except FileNotFoundError:
                return None
            except (OSError, SeekPointsDamaged) as exc:
                self._drop_seek_points(version, exc)
                return None
        return self._seek_points[path]

    def _drop_seek_points(self, version: DecodedVersion, why: BaseException) -> None:
        path = self.checkpoints_path(version.source_digest)
        log.warning("%s: seek points unusable (%s); decoding from the start from now on",
                    version.key, why)  # fmt: skip
        self._seek_points.pop(path, None)
        path.unlink(missing_ok=True)
        path.with_suffix(".gzidx").unlink(missing_ok=True)  # an older artifactfs's export

    async def _fetch_span(self, source: ObjectVersion, start: int, end: int) -> bytes:
        """Bytes [start, end) of `source` in parallel ranged GETs."""
        parts: dict[int, bytes] = {}
        failures: list[ArtifactFSError] = []  # kept out of the nursery's ExceptionGroup

        async def get(offset: int) -> None:
            try:
                length = min(_SPAN_PART, end - offset)
                parts[offset] = await counted_get(self.store, self.metrics, source, offset, length)
            except ArtifactFSError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for offset in range(start, end, _SPAN_PART):
                nursery.start_soon(get, offset)
        if failures:
            raise failures[0]
        return b"".join(parts[offset] for offset in sorted(parts))

    async def _redecode(self, version: DecodedVersion, blockno: int) -> bytes:
        # Every ranged GET below is pinned to this version's ETag and size (StaleObject
        # if the archive was replaced), so no HEAD is needed first.
        source = ObjectVersion(version.bucket, version.key, version.etag, version.source_size)
        if source.digest != version.source_digest:
            raise StaleObject(f"{version.key}: the archive was replaced since it was opened")
        fetch = self._fetcher(source)
        put = self._block_sink(source, version.codec)
        wanted: list[bytes] = []
        start = blockno * self.block_size
        want = max(0, min(self.block_size, version.size - start))
        points = await self._points_of(version)
        if points is not None:
            lo, hi = points.compressed_span(start, start + want, GZIP_READ_BUFFER)
            fetch = _span_fetch(await self._fetch_span(source, lo, hi), lo, fetch)
        damaged: list[SeekPointsDamaged] = []

        def on_block(n: int, data: bytes) -> None:
            put(n, data)
            if n == blockno:
                wanted.append(data)

        def decode_from_seek_point(points: SeekPoints) -> None:
            reader = open_at_checkpoint(RangeFile(fetch, source.size), points, start, start + want)  # type: ignore[arg-type]
            data = bytearray()
            while len(data) < want and (chunk := reader.read(want - len(data))):
                data += chunk
            on_block(blockno, bytes(data))

        def decode_from_start() -> None:
            decoder: BinaryIO
            if version.codec.startswith("deflate:"):  # one zip member's compressed range
                _, member_start, length = version.codec.split(":")
                base = int(member_start)
                raw = RangeFile(lambda o, n: fetch(base + o, n), int(length),
                                window=_SEQUENTIAL_WINDOW)  # fmt: skip
                decoder = InflateReader(raw)  # type: ignore[arg-type]
            else:
                raw = RangeFile(fetch, source.size)
                decoder = open_decoder(Format(version.codec), raw)  # type: ignore[arg-type]
            BlockTee(decoder, self.block_size, on_block, self.max_decoded, blockno).drain()

        def decode() -> None:
            try:
                if points is not None:
                    try:
                        return decode_from_seek_point(points)
                    except SeekPointsDamaged as exc:
                        damaged.append(exc)
                decode_from_start()
            except (DecodeLimit, *DECODE_ERRORS) as exc:
                raise CorruptArchive(
                    f"{version.key}: cannot decode block {blockno}: {exc}"
                ) from None

        self.metrics.redecodes += 1
        try:
            await trio.to_thread.run_sync(decode)
        finally:
            if damaged:
                self._drop_seek_points(version, damaged[0])
        if not wanted:
            raise CorruptArchive(f"{version.key}: block {blockno} is past the decoded end")
        return wanted[0]
