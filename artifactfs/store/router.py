"""One ObjectStore face over several buckets of one endpoint.

An experiment's artifacts may live in several buckets (a workspace reused
from another experiment's bucket); each ObjectVersion names its bucket, so
reads are routed by it. Stores are made on first use with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable

from artifactfs.store.base import ListPage, ObjectInfo, ObjectStore, ObjectVersion


class BucketRouter:
    def __init__(self, default: ObjectStore, make: Callable[[str], ObjectStore]):
        self.bucket = default.bucket
        self._stores: dict[str, ObjectStore] = {default.bucket: default}
        self._make = make

    def add(self, route: str, store: ObjectStore) -> None:
        """Serve `route` (an artifact's own endpoint or credentials) with `store`."""
        self._stores.setdefault(route, store)

    def store(self, route: str) -> ObjectStore:
        """The store for a route: a bucket name, or one registered with `add`."""
        if route not in self._stores:
            self._stores[route] = self._make(route)
        return self._stores[route]

    def describe(self) -> str:
        return self._stores[self.bucket].describe()

    async def check(self) -> None:
        await self._stores[self.bucket].check()

    async def head(self, key: str) -> ObjectInfo:
        return await self._stores[self.bucket].head(key)

    async def list_page(self, prefix: str, delimiter: str | None = "/", token: str | None = None,
                        max_keys: int = 1000) -> ListPage:  # fmt: skip
        return await self._stores[self.bucket].list_page(prefix, delimiter, token, max_keys)

    async def get_range(self, version: ObjectVersion, start: int, length: int) -> bytes:
        return await self.store(version.bucket).get_range(version, start, length)

    async def get_object(self, key: str, max_size: int) -> bytes:
        return await self._stores[self.bucket].get_object(key, max_size)

    async def put_object(self, key: str, data: bytes) -> None:
        await self._stores[self.bucket].put_object(key, data)

    async def aclose(self) -> None:
        for store in self._stores.values():
            await store.aclose()
