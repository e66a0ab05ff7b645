"""A local directory served as if it were a bucket (`file:///DIR`).

Keys are paths relative to the directory. The etag is made of the file's
mtime and size, so replacing a file is seen as a new version, exactly as a
new ETag is on S3.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from artifactfs.errors import BucketNotFound, NotFound, StaleObject, StoreUnavailable
from artifactfs.store.base import ListPage, ObjectInfo, ObjectVersion

T = TypeVar("T")


class LocalStore:
    """ObjectStore over a directory tree; useful for tests, demos and NFS-backed data."""

    def __init__(self, root: str | os.PathLike[str], max_concurrency: int = 8):
        self.root = Path(root)
        self.bucket = str(self.root)
        self._limiter = trio.CapacityLimiter(max_concurrency)

    def describe(self) -> str:
        return f"file://{self.root}"

    async def _run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise NotFound(f"{self.describe()}/{key}: not a valid key")
        return self.root.joinpath(*parts)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}", st.st_mtime_ns)

    async def check(self, deadline: float = 12.0) -> None:
        def probe() -> None:
            if not self.root.is_dir():
                raise BucketNotFound(f"{self.describe()}: no such directory")
            os.listdir(self.root)

        await self._run(probe)

    async def head(self, key: str) -> ObjectInfo:
        def head_sync() -> ObjectInfo:
            try:
                st = self._path(key).stat()
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"{self.describe()}/{key}: no such object") from None
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"{self.describe()}/{key}: no such object")
            return self._info(key, st)

        return await self._run(head_sync)

    def _walk(self, prefix: str, delimiter: str | None) -> list[tuple[str, ObjectInfo | None]]:
        """All (key, info) or (common prefix, None) under `prefix`, in key order."""
        base = prefix.rpartition("/")[0]
        try:
            start = self._path(base) if base else self.root
        except NotFound:
            return []
        out: list[tuple[str, ObjectInfo | None]] = []
        pending = [(start, f"{base}/" if base else "")]
        while pending:
            directory, key_prefix = pending.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                key = key_prefix + entry.name
                if not key.startswith(prefix) and not prefix.startswith(key + "/"):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if delimiter and key.startswith(prefix):
                        out.append((key + "/", None))
                    else:
                        pending.append((Path(entry.path), key + "/"))
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    out.append((key, self._info(key, entry.stat(follow_symlinks=False))))
        out.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
        return out

    async def list_page(
        self,
        prefix: str,
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        if delimiter not in (None, "/"):
            raise ValueError("the local store lists with '/' or no delimiter")

        def list_sync() -> ListPage:
            items = self._walk(prefix, delimiter)
            if token:
                items = [i for i in items if i[0] > token]
            page = ListPage()
            for key, info in items[:max_keys]:
                if info is None:
                    page.prefixes.append(key)
                else:
                    page.objects.append(info)
            if len(items) > max_keys:
                page.next_token = items[max_keys - 1][0]
            return page

        return await self._run(list_sync)

    async def get_range(self, version: ObjectVersion, start: int, length: int) -> bytes:
        what = f"{self.describe()}/{version.key}"

        def read_sync() -> bytes:
            try:
                fd = os.open(self._path(version.key), os.O_RDONLY)
            except FileNotFoundError:
                raise StaleObject(f"{what}: the object was removed since it was opened") from None
            try:
                if self._info(version.key, os.fstat(fd)).etag != version.etag:
                    raise StaleObject(f"{what}: the object was replaced since it was opened")
                data = os.pread(fd, length, start)
            finally:
                os.close(fd)
            if len(data) != length:
                raise StoreUnavailable(f"{what}: short read ({len(data)} of {length} bytes)")
            return data

        return await self._run(read_sync)

    async def get_object(self, key: str, max_size: int) -> bytes:
        info = await self.head(key)
        if info.size > max_size:
            raise StoreUnavailable(f"{self.describe()}/{key}: larger than {max_size} bytes")
        return await self._run(self._path(key).read_bytes)

    async def put_object(self, key: str, data: bytes) -> None:
        def put() -> None:
            path = self._path(key)
            tmp = path.with_name(path.name + ".tmp-artifactfs")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await self._run(put)

    async def aclose(self) -> None:
        return None
