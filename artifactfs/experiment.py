"""The experiment view: one directory per artifact tag of one StudioML experiment.

- an artifact with `unpack: true` whose object is an archive shows its members;
- any other shows as `<tag>/<basename of the key>`;
- an artifact whose object does not exist yet (a mutable artifact not yet
  uploaded) is an empty directory, and the log says so once.

It answers the same calls as BucketNamespace, so the filesystem model does
not know which view it serves. Object paths are `bucket NUL key`, because
an experiment's artifacts may live in several buckets.
"""

from __future__ import annotations

import logging

import cachetools
import trio

from artifactfs.archives import SUPPORTED, ArchiveService
from artifactfs.errors import ArtifactFSError, NotFound
from artifactfs.metrics import Metrics
from artifactfs.namespace import Entry
from artifactfs.store.base import ObjectInfo, ObjectVersion
from artifactfs.store.http import public_url
from artifactfs.store.router import BucketRouter
from artifactfs.studio import ArtifactSpec, Experiment

log = logging.getLogger(__name__)

_TAG = "\0tag\0"
_EMPTY = "\0empty\0"
_ERROR = "\0error\0"


def object_path(bucket: str, key: str) -> str:
    return f"{bucket}\0{key}"


class ExperimentNamespace:
    def __init__(
        self,
        experiment: Experiment,
        router: BucketRouter,
        metrics: Metrics,
        archives: ArchiveService | None,
        metadata_ttl: float = 1.0,
    ):
        self.experiment = experiment
        self.router = router
        self.metrics = metrics
        self.archives = archives
        ttl = max(metadata_ttl, 1e-6)
        self._root: cachetools.TTLCache[str, dict[str, Entry]] = cachetools.TTLCache(1, ttl)
        self._infos: cachetools.TTLCache[str, ObjectInfo] = cachetools.TTLCache(4096, ttl)
        # Immutable artifacts (content-addressed blobstore keys) never change: no revalidation.
        self._immutable: dict[str, ObjectInfo] = {}
        self._mutable_paths = {
            object_path(s.route, s.key) for s in experiment.artifacts if s.mutable
        }
        self._said_missing: set[str] = set()
        self._errors: dict[str, ArtifactFSError] = {}

    def bucket_of(self, path: str) -> str:
        if "\0" in path and not path.startswith("\0"):
            return path.split("\0", 1)[0]
        return self.router.bucket

    async def _entry(self, spec: ArtifactSpec) -> Entry:
        path = object_path(spec.route, spec.key)
        try:
            info = await self._head(path)
        except ArtifactFSError as exc:
            if isinstance(exc, NotFound):
                return self._missing(spec)
            # One artifact's refused credentials must not hide the others: the tag
            # shows, and reading it gives the error (EACCES for a refusal).
            log.warning("artifact %s: %s", spec.tag, exc)
            self._errors[spec.tag] = exc
            return Entry(spec.tag, "dir", _ERROR + spec.tag)
        self._errors.pop(spec.tag, None)
        return await self._present(spec, path, info)

    def _missing(self, spec: ArtifactSpec) -> Entry:
        """A mutable artifact not uploaded yet: an empty directory, said once."""
        if spec.tag not in self._said_missing:
            self._said_missing.add(spec.tag)
            where = public_url(spec.url) if spec.url else f"s3://{spec.bucket}/{spec.key}"
            log.info("artifact %s: %s does not exist (yet); shown empty", spec.tag, where)
        return Entry(spec.tag, "dir", _EMPTY + spec.tag)

    async def _present(self, spec: ArtifactSpec, path: str, info: ObjectInfo) -> Entry:
        self._said_missing.discard(spec.tag)
        if spec.unpack and self.archives is not None:
            version = ObjectVersion.of(spec.route, info)
            try:
                fmt = await self.archives.sniff(version)
            except ArtifactFSError as exc:
                log.warning("artifact %s: cannot tell whether it is an archive (%s)", spec.tag, exc)
                fmt = None
            if fmt in SUPPORTED:
                return Entry(spec.tag, "dir", path, info, archive=True)
        return Entry(spec.tag, "dir", _TAG + spec.tag)

    async def list_dir(self, prefix: str) -> dict[str, Entry]:
        if prefix == "":
            root = self._root.get("")
            if root is None:
                entries: dict[str, Entry] = {}

                async def one(spec: ArtifactSpec) -> None:
                    entries[spec.tag] = await self._entry(spec)

                async with trio.open_nursery() as nursery:
                    for spec in self.experiment.artifacts:
                        nursery.start_soon(one, spec)
                root = {tag: entries[tag] for tag in sorted(entries)}
                self._root[""] = root
            return root
        if prefix.startswith(_EMPTY):
            return {}
        if prefix.startswith(_ERROR):
            error = self._errors.get(prefix[len(_ERROR) :])
            if error is not None:
                raise type(error)(str(error))
            return {}
        if prefix.startswith(_TAG):
            tag = prefix[len(_TAG) :]
            spec = next(s for s in self.experiment.artifacts if s.tag == tag)
            path = object_path(spec.route, spec.key)
            info = await self._head(path)
            name = spec.key.rstrip("/").rpartition("/")[2]
            return {name: Entry(name, "file", path, info)}
        raise NotFound(prefix)

    async def lookup(self, prefix: str, name: str) -> Entry:
        entry = (await self.list_dir(prefix)).get(name)
        if entry is None:
            raise NotFound(f"{prefix}/{name}")
        return entry

    async def _head(self, path: str) -> ObjectInfo:
        info = self._immutable.get(path) or self._infos.get(path)
        if info is None:
            bucket, key = path.split("\0", 1)
            info = await self.router.store(bucket).head(key)
            self.metrics.heads += 1
            if path in self._mutable_paths:
                self._infos[path] = info
            else:
                self._immutable[path] = info
        return info

    async def object_info(self, path: str) -> ObjectInfo:
        return await self._head(path)
