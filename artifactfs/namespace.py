"""The bucket view: prefixes as directories, objects as files.

Listings are fetched page by page, cached with a TTL, and shared by every
lookup in the directory. A lookup in a directory whose listing is not
cached costs one HEAD and one one-key LIST, run in parallel, instead of a
full listing. Misses are cached briefly so a shell probing for files that
do not exist does not hammer the store.

When the store cannot be reached, the last listing and metadata seen are
used instead (stale-if-error), so cached content stays readable through an
outage; one warning per directory or object says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

import cachetools
import trio

from artifactfs.archive.codecs import COMPRESSED
from artifactfs.archive.detect import archive_stem, compressed_stem
from artifactfs.archives import SIDECAR_SUFFIX, SUPPORTED, ArchiveService
from artifactfs.errors import ArtifactFSError, NotFound, StoreUnavailable
from artifactfs.metrics import Metrics
from artifactfs.names import is_valid_name
from artifactfs.singleflight import SingleFlight
from artifactfs.store.base import ObjectInfo, ObjectStore, ObjectVersion, list_all

log = logging.getLogger(__name__)
T = TypeVar("T")

Kind = Literal["dir", "file"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a directory: a prefix (`path` ends with '/') or an object key."""

    name: str
    kind: Kind
    path: str
    info: ObjectInfo | None = None
    archive: bool = False  # a directory that is an archive object (path is its key)
    codec: str = ""  # a single compressed file shown decoded (`info` is the object's)
    decoded_size: int = 0


class Namespace(Protocol):
    """What the filesystem model asks of a view (the bucket view, an experiment view)."""

    def bucket_of(self, path: str) -> str: ...

    async def list_dir(self, prefix: str) -> dict[str, Entry]: ...

    async def lookup(self, prefix: str, name: str) -> Entry: ...

    async def object_info(self, key: str) -> ObjectInfo: ...


class BucketNamespace:
    def __init__(
        self,
        store: ObjectStore,
        metrics: Metrics,
        metadata_ttl: float = 1.0,
        negative_ttl: float = 1.0,
        max_cached_dirs: int = 512,
        archives: ArchiveService | None = None,
        archive_mode: str = "unpack",
    ):
        self.store = store
        self.metrics = metrics
        self.archives = archives
        self.archive_mode = archive_mode if archives is not None else "raw"
        ttl = max(metadata_ttl, 1e-6)
        self._listings: cachetools.TTLCache[str, dict[str, Entry]] = cachetools.TTLCache(
            max_cached_dirs, ttl
        )
        self._infos: cachetools.TTLCache[str, ObjectInfo] = cachetools.TTLCache(65536, ttl)
        self._negative: cachetools.TTLCache[str, bool] = cachetools.TTLCache(
            65536, max(negative_ttl, 1e-6)
        )
        self._list_flights: SingleFlight[str, dict[str, Entry]] = SingleFlight()
        # Last known good answers, kept past their TTL for use during outages.
        self._known_listings: cachetools.LRUCache[str, dict[str, Entry]] = cachetools.LRUCache(
            max_cached_dirs
        )
        self._known_infos: cachetools.LRUCache[str, ObjectInfo] = cachetools.LRUCache(65536)
        self._known_entries: cachetools.LRUCache[str, Entry] = cachetools.LRUCache(65536)
        self._warned_stale: set[str] = set()

    def _or_known(self, known: T | None, what: str, exc: StoreUnavailable) -> T:
        """Stale-if-error: the last known answer, with one warning per path; else the error."""
        if known is None:
            raise exc
        if what not in self._warned_stale:
            self._warned_stale.add(what)
            log.warning("%s; serving the last known %s", exc, what)
        return known

    async def list_dir(self, prefix: str) -> dict[str, Entry]:
        """The entries of the directory at `prefix` ('' or ending in '/'), sorted by name."""
        cached = self._listings.get(prefix)
        if cached is not None:
            return cached
        return await self._list_flights.run(prefix, lambda: self._list_or_known(prefix))

    async def _list_or_known(self, prefix: str) -> dict[str, Entry]:
        what = f"listing of /{prefix}"
        try:
            listing = await self._list_uncached(prefix)
        except StoreUnavailable as exc:
            return self._or_known(self._known_listings.get(prefix), what, exc)
        self._listings[prefix] = self._known_listings[prefix] = listing
        self._warned_stale.discard(what)
        return listing

    async def _list_uncached(self, prefix: str) -> dict[str, Entry]:
        files: dict[str, Entry] = {}
        dirs: dict[str, Entry] = {}
        skipped = 0
        async for page in list_all(self.store, prefix):
            self.metrics.lists += 1
            for p in page.prefixes:
                name = p[len(prefix) :].rstrip("/")
                if is_valid_name(name) and p.endswith("/"):
                    dirs[name] = Entry(name, "dir", p)
                else:
                    skipped += 1
            for info in page.objects:
                name = info.key[len(prefix) :]
                if not name:  # the directory marker object itself
                    continue
                if is_valid_name(name):
                    files[name] = Entry(name, "file", info.key, info)
                    self._infos[info.key] = self._known_infos[info.key] = info
                else:
                    skipped += 1
        if skipped:
            log.debug("%s: %d keys have names a directory cannot show", prefix or "/", skipped)
        for name in files.keys() & dirs.keys():
            log.debug("%s%s: both an object and a prefix; showing the directory", prefix, name)
        for name in [n for n in files if n.endswith(SIDECAR_SUFFIX)]:
            if name[: -len(SIDECAR_SUFFIX)] in files:  # an index sidecar next to its archive
                del files[name]
        merged = {**files, **dirs}
        await self._show_archives(merged)
        return {
            n: merged[n] for n in sorted(merged, key=lambda n: n.encode("utf-8", "surrogateescape"))
        }

    async def _show_archives(self, entries: dict[str, Entry]) -> None:
        """Turn archive objects into directories named without their archive extension.

        Only names with an archive suffix are looked at (one small ranged GET
        each, remembered per version); what they hold is decided by content.
        When the shorter name is taken by a sibling, the full name is kept.
        """
        if self.archive_mode == "raw" or self.archives is None:
            return
        archives = self.archives
        candidates = [
            e for e in entries.values()
            if e.kind == "file" and e.info and (archive_stem(e.name) or compressed_stem(e.name))
        ]  # fmt: skip
        shown: list[tuple[str, Entry]] = []  # (name without the suffix, what it shows as)

        async def check(entry: Entry) -> None:
            assert entry.info is not None
            version = ObjectVersion.of(self.store.bucket, entry.info)
            try:
                fmt = await archives.sniff(version)
                stem = archive_stem(entry.name)
                if stem is not None:
                    if fmt in SUPPORTED:
                        shown.append((stem, replace(entry, kind="dir", archive=True)))
                elif fmt in COMPRESSED:
                    assert fmt is not None
                    stream = await archives.decoded_version(version, fmt.value)
                    view = replace(entry, codec=fmt.value, decoded_size=stream.size)
                    shown.append((compressed_stem(entry.name) or entry.name, view))
            except ArtifactFSError as exc:
                log.warning("%s: cannot tell whether it is an archive (%s)", entry.path, exc)

        async with trio.open_nursery() as nursery:
            for entry in candidates:
                nursery.start_soon(check, entry)
        # archives first, then single files, each by name: a stem taken keeps the full name
        for stem, view in sorted(shown, key=lambda s: (not s[1].archive, s[1].name)):
            name = stem if stem not in entries else view.name
            if self.archive_mode == "both" and name == view.name:
                log.debug("%s: no free name for its directory or decoded view", view.path)
                continue
            if self.archive_mode == "unpack":
                del entries[view.name]
            entries[name] = replace(view, name=name)

    async def lookup(self, prefix: str, name: str) -> Entry:
        """One entry of a directory, without listing it all when it is not cached."""
        if not is_valid_name(name):
            raise NotFound(name)
        listing = self._listings.get(prefix)
        if listing is not None:
            entry = listing.get(name)
            if entry is None:
                raise NotFound(f"{prefix}{name}")
            return entry
        path = prefix + name
        if path in self._negative:
            raise NotFound(path)
        if self.archive_mode != "raw":
            # Archive names depend on siblings (a stem taken by another name keeps
            # the full name), so they are answered from the whole listing.
            try:
                entry = await self._lookup_via_listing(prefix, name)
            except StoreUnavailable:
                entry = None  # the probes below fall back to what was last known
            if entry is not None:
                return entry

        head: list[ObjectInfo | None] = [None]
        is_dir = [False]
        failures: list[ArtifactFSError] = []  # kept out of the nursery's ExceptionGroup

        async def probe_object() -> None:
            try:
                head[0] = await self.store.head(path)
                self.metrics.heads += 1
            except NotFound:
                pass
            except ArtifactFSError as exc:
                failures.append(exc)

        async def probe_prefix() -> None:
            try:
                page = await self.store.list_page(path + "/", "/", None, 1)
            except ArtifactFSError as exc:
                failures.append(exc)
                return
            self.metrics.lists += 1
            is_dir[0] = bool(page.objects or page.prefixes)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe_object)
            nursery.start_soon(probe_prefix)
        if failures:
            first = failures[0]
            if not isinstance(first, StoreUnavailable):
                raise first
            listing = self._known_listings.get(prefix)
            if listing is not None:  # the parent's last listing answers, also "no such name"
                entry = self._or_known(listing, f"entry /{path}", first).get(name)
                if entry is None:
                    raise NotFound(path)
                return entry
            return self._or_known(self._known_entries.get(path), f"entry /{path}", first)
        if is_dir[0]:
            entry = Entry(name, "dir", path + "/")
            self._known_entries[path] = entry
            return entry
        if head[0] is not None:
            self._infos[path] = self._known_infos[path] = head[0]
            entry = Entry(name, "file", path, head[0])
            self._known_entries[path] = entry
            return entry
        self._negative[path] = True
        raise NotFound(path)

    async def _lookup_via_listing(self, prefix: str, name: str) -> Entry | None:
        """Probe for `name.<archive suffix>` objects; list the directory if there are any."""
        if archive_stem(name) is None and compressed_stem(name) is None:
            page = await self.store.list_page(prefix + name + ".", "/", None, 20)
            self.metrics.lists += 1
            stems = {archive_stem(o.key[len(prefix) :]) for o in page.objects}
            stems |= {compressed_stem(o.key[len(prefix) :]) for o in page.objects}
            if name not in stems:
                return None
        listing = await self.list_dir(prefix)
        entry = listing.get(name)
        if entry is None:
            self._negative[prefix + name] = True
            raise NotFound(prefix + name)
        return entry

    def bucket_of(self, path: str) -> str:
        """The bucket an object path is in (one bucket in this view)."""
        return self.store.bucket

    async def object_info(self, key: str) -> ObjectInfo:
        """Current metadata of an object, at most `metadata_ttl` old."""
        info = self._infos.get(key)
        if info is None:
            try:
                info = await self.store.head(key)
            except StoreUnavailable as exc:
                return self._or_known(self._known_infos.get(key), f"metadata of /{key}", exc)
            self.metrics.heads += 1
            self._infos[key] = self._known_infos[key] = info
            self._warned_stale.discard(f"metadata of /{key}")
        return info
