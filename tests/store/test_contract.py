"""One contract, two stores: a local folder and a real S3 server on loopback.

Both see the same files: the S3 server (rclone serve s3) serves the folder
the local store reads, so every assertion compares like with like.
"""

from __future__ import annotations

import os
import time

import boto3
import pytest
import trio

from artifactfs.devserver import free_port
from artifactfs.errors import AccessDenied, BucketNotFound, NotFound, StaleObject, StoreUnavailable
from artifactfs.store.base import ObjectVersion, list_all
from artifactfs.store.local import LocalStore
from artifactfs.store.s3 import S3Settings, S3Store

KEYS = ["a.txt", "b/one", "b/two", "b/sub/deep", "c-d", "c/x", "empty"]


@pytest.fixture
def seeded(bucket):
    for key in KEYS:
        path = bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if key == "empty" else (key.encode() * 1000)[:3001])
    return bucket


def _s3(server, bucket="bkt", **kw) -> S3Store:
    session = boto3.session.Session(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    return S3Store(S3Settings(bucket, endpoint_url=server.endpoint_url, **kw), session)


@pytest.fixture(params=["local", "s3"])
def store(request, seeded, s3):
    if request.param == "local":
        return LocalStore(seeded)
    return _s3(s3)


def run(fn, *args):
    return trio.run(fn, *args)


def test_head(store, seeded):
    async def main():
        info = await store.head("b/one")
        assert info.key == "b/one"
        assert info.size == 3001
        assert info.etag
        assert abs(info.mtime_ns / 1e9 - (seeded / "b/one").stat().st_mtime) < 2
        with pytest.raises(NotFound):
            await store.head("b/nothing")
        with pytest.raises(NotFound):
            await store.head("b")  # a prefix is not an object

    run(main)


def test_list_with_delimiter(store):
    async def main():
        page = await store.list_page("", "/")
        assert [o.key for o in page.objects] == ["a.txt", "c-d", "empty"]
        assert page.prefixes == ["b/", "c/"]
        page = await store.list_page("b/", "/")
        assert [o.key for o in page.objects] == ["b/one", "b/two"]
        assert page.prefixes == ["b/sub/"]
        assert page.next_token is None

    run(main)


def test_list_is_paginated_in_key_order(store):
    async def main():
        seen = []
        pages = 0
        async for page in list_all(store, "", None, max_keys=2):
            pages += 1
            seen += [o.key for o in page.objects]
        assert seen == sorted(KEYS)
        assert pages == 4

    run(main)


def test_list_of_a_name_prefix(store):
    async def main():
        page = await store.list_page("c", "/")
        assert [o.key for o in page.objects] == ["c-d"]
        assert page.prefixes == ["c/"]
        page = await store.list_page("zzz/", "/")
        assert page.objects == [] and page.prefixes == []

    run(main)


def test_get_range(store, seeded):
    async def main():
        content = (seeded / "b/two").read_bytes()
        v = ObjectVersion.of(store.bucket, await store.head("b/two"))
        assert await store.get_range(v, 0, 10) == content[:10]
        assert await store.get_range(v, 2990, 11) == content[2990:]
        assert await store.get_range(v, 1000, 1) == content[1000:1001]

    run(main)


def test_get_range_of_a_replaced_object_is_stale(store, seeded):
    async def main():
        v = ObjectVersion.of(store.bucket, await store.head("a.txt"))
        time.sleep(0.01)
        (seeded / "a.txt").write_bytes(b"X" * 3001)  # same size, new content
        os.utime(seeded / "a.txt", (time.time() + 5, time.time() + 5))
        with pytest.raises(StaleObject):
            await store.get_range(v, 0, 100)

    run(main)


def test_check_passes(store):
    run(store.check)


def test_missing_bucket(s3, tmp_path):
    async def main():
        with pytest.raises(BucketNotFound):
            await _s3(s3, bucket="no-such-bucket").check()
        with pytest.raises(BucketNotFound):
            await LocalStore(tmp_path / "nope").check()

    run(main)


def test_wrong_secret_is_access_denied(s3):
    async def main():
        session = boto3.session.Session(
            aws_access_key_id=s3.access_key, aws_secret_access_key="wrong" * 8,
            region_name="us-east-1",
        )  # fmt: skip
        store = S3Store(S3Settings("bkt", endpoint_url=s3.endpoint_url), session)
        with pytest.raises(AccessDenied) as err:
            await store.check()
        assert "wrong" not in str(err.value)

    run(main)


def test_unreachable_endpoint_fails_within_the_deadline():
    async def main():
        session = boto3.session.Session(
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x" * 40,
            region_name="us-east-1",
        )  # fmt: skip
        url = f"http://127.0.0.1:{free_port()}"
        store = S3Store(S3Settings("bkt", endpoint_url=url, request_timeout=5), session)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.head("x")
        assert time.monotonic() - start < 6

    run(main)
