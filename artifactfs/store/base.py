"""The ObjectStore protocol and the value types every layer shares.

An object version is `(bucket, key, etag, size)`: every cached block is keyed
by it, so two versions of one key can never be mixed in a read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD or a listing tells about one object."""

    key: str
    size: int
    etag: str
    mtime_ns: int


@dataclass(frozen=True)
class ObjectVersion:
    """One immutable version of an object: the identity of cached content."""

    bucket: str
    key: str
    etag: str
    size: int

    @classmethod
    def of(cls, bucket: str, info: ObjectInfo) -> ObjectVersion:
        return cls(bucket, info.key, info.etag, info.size)

    @cached_property
    def digest(self) -> bytes:
        """A fixed-size name for this version, used in block file names and headers.

        Computed once per version object: every block lookup of a read uses it.
        """
        h = hashlib.sha256()
        for part in (self.bucket, self.key, self.etag, str(self.size)):
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")
        return h.digest()


@dataclass(frozen=True)
class DecodedVersion(ObjectVersion):
    """The decompressed content of an object version (`size` is the decoded size).

    Its blocks are made by decoding, not by ranged GETs; their identity comes
    from the source version and the codec, so it is known before decoding
    starts (when the decoded size is not).
    """

    codec: str = ""
    source_digest: bytes = b""
    source_size: int = -1  # the compressed object's size

    @cached_property
    def digest(self) -> bytes:
        return decoded_digest(self.source_digest, self.codec)


def decoded_digest(source_digest: bytes, codec: str) -> bytes:
    return hashlib.sha256(source_digest + b"\0decoded\0" + codec.encode()).digest()


@dataclass(slots=True)
class ListPage:
    """One page of a listing: objects and, with a delimiter, common prefixes."""

    objects: list[ObjectInfo] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    next_token: str | None = None


def normalize_etag(raw: str | None, size: int, mtime_ns: int) -> str:
    """A comparable etag; servers that send none get one made of size and mtime.

    Quotes are stripped because S3 quotes the ETag header but some servers
    leave the quotes out of listings. The synthetic form uses whole seconds,
    the precision every response (listing, HEAD, GET) agrees on.
    """
    etag = (raw or "").strip().strip('"')
    if etag:
        return etag
    return f"weak:{size:x}:{mtime_ns // 1_000_000_000:x}"


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def content_range_total(header: str | None) -> int | None:
    """The object's total size from a `Content-Range: bytes a-b/total` header."""
    m = _CONTENT_RANGE.match(header or "")
    return int(m.group(3)) if m else None


def is_weak(etag: str) -> bool:
    """True for a synthetic etag; the server cannot be asked to check it (If-Match)."""
    return etag.startswith("weak:")


class ObjectStore(Protocol):
    """What artifactfs needs of a bucket. Every method is async and bounded in time."""

    bucket: str

    def describe(self) -> str:
        """A human name for logs and errors (never holds a secret)."""
        ...

    async def check(self) -> None:
        """Fail fast with a clear domain error if the bucket cannot be used."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of one object; NotFound if there is none."""
        ...

    async def list_page(
        self,
        prefix: str,
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One page of the keys starting with `prefix`, in key order."""
        ...

    async def get_range(self, version: ObjectVersion, start: int, length: int) -> bytes:
        """`length` bytes at `start` of exactly `version`; StaleObject if it changed."""
        ...

    async def get_object(self, key: str, max_size: int) -> bytes:
        """A whole (small) object; NotFound if absent; StoreUnavailable past `max_size`."""
        ...

    async def put_object(self, key: str, data: bytes) -> None:
        """Write an object (only `--publish-index` does; the mount itself is read-only)."""
        ...

    async def aclose(self) -> None: ...


async def list_all(
    store: ObjectStore, prefix: str, delimiter: str | None = "/", max_keys: int = 1000
) -> AsyncIterator[ListPage]:
    """Every page of a listing, following continuation tokens."""
    token: str | None = None
    while True:
        page = await store.list_page(prefix, delimiter, token, max_keys)
        yield page
        if not page.next_token:
            return
        token = page.next_token
