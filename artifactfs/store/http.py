"""One object behind an http(s) URL, read with ranged GETs (StudioML `url` artifacts).

The same guarantees as the S3 store: calls run in worker threads behind a
limiter and inside a trio deadline; a range is pinned to the version opened
(ETag, else size and Last-Modified; `If-Range` is not trusted alone, the
response is checked). The URL's query string may carry a signature (a
presigned URL), so only scheme, host and path are ever shown.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import trio
import urllib3

from artifactfs.errors import (
    AccessDenied,
    ArtifactFSError,
    NotFound,
    StaleObject,
    StoreUnavailable,
)
from artifactfs.store.base import (
    ListPage,
    ObjectInfo,
    ObjectVersion,
    content_range_total,
    normalize_etag,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def public_url(url: str) -> str:
    """The URL without query or credentials: safe for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class HttpStore:
    def __init__(self, url: str, route: str, request_timeout: float = 30.0, attempts: int = 3):
        self.url = url
        self.bucket = route
        self.request_timeout = request_timeout
        self._pool = urllib3.PoolManager(
            retries=urllib3.Retry(total=attempts - 1, backoff_factor=0.2,
                                  status_forcelist=(500, 502, 503, 504)),
            timeout=urllib3.Timeout(connect=5.0, read=min(15.0, request_timeout)),
        )  # fmt: skip
        self._limiter = trio.CapacityLimiter(8)

    def describe(self) -> str:
        return public_url(self.url)

    async def _call(self, fn: Callable[[], T]) -> T:
        what = self.describe()
        try:
            with trio.fail_after(self.request_timeout):
                return await trio.to_thread.run_sync(
                    fn, limiter=self._limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError:
            raise StoreUnavailable(f"{what}: no answer within {self.request_timeout:g} s") from None
        except ArtifactFSError:
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{what}: {type(exc).__name__}") from None

    def _check(self, status: int) -> None:
        what = self.describe()
        if status in (401, 403):
            raise AccessDenied(f"{what}: access denied ({status})")
        if status == 404:
            raise NotFound(f"{what}: no such object")
        if status >= 400:
            raise StoreUnavailable(f"{what}: server error {status}")

    @staticmethod
    def _mtime_ns(value: str | None) -> int:
        if not value:
            return 0
        try:
            return int(email.utils.parsedate_to_datetime(value).timestamp() * 1_000_000_000)
        except (TypeError, ValueError):
            return 0

    async def check(self, deadline: float = 12.0) -> None:
        await self.head("")

    async def head(self, key: str) -> ObjectInfo:
        def head() -> ObjectInfo:
            resp = self._pool.request("HEAD", self.url, redirect=True)
            self._check(resp.status)
            size = int(resp.headers.get("Content-Length", "0"))
            mtime = self._mtime_ns(resp.headers.get("Last-Modified"))
            return ObjectInfo(key, size, normalize_etag(resp.headers.get("ETag"), size, mtime),
                              mtime)  # fmt: skip

        return await self._call(head)

    async def list_page(self, prefix: str, delimiter: str | None = "/", token: str | None = None,
                        max_keys: int = 1000) -> ListPage:  # fmt: skip
        return ListPage()  # a URL is one object; there is nothing to list

    async def get_range(self, version: ObjectVersion, start: int, length: int) -> bytes:
        what = f"{self.describe()} [{start}+{length}]"

        def get() -> bytes:
            resp = self._pool.request(
                "GET", self.url, headers={"Range": f"bytes={start}-{start + length - 1}"},
                redirect=True, preload_content=True,
            )  # fmt: skip
            self._check(resp.status)
            total = content_range_total(resp.headers.get("Content-Range"))
            if resp.status != 206 or total is None:
                raise StoreUnavailable(f"{what}: the server does not serve byte ranges")
            mtime = self._mtime_ns(resp.headers.get("Last-Modified"))
            if total != version.size or normalize_etag(resp.headers.get("ETag"), total,
                                                       mtime) != version.etag:  # fmt: skip
                raise StaleObject(f"{what}: the object was replaced since it was opened")
            data = bytes(resp.data)
            if len(data) != length:
                raise StoreUnavailable(f"{what}: short read ({len(data)} of {length} bytes)")
            return data

        return await self._call(get)

    async def get_object(self, key: str, max_size: int) -> bytes:
        raise NotFound(f"{self.describe()}: no sidecars next to a URL")

    async def put_object(self, key: str, data: bytes) -> None:
        raise AccessDenied(f"{self.describe()}: read-only")

    async def aclose(self) -> None:
        self._pool.clear()
