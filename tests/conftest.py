"""Fixtures: a real S3 server on loopback per test, and real mounts that always unmount."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from artifactfs.devserver import S3Server
from tests.support import Mount


def _fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _fuse_available():
        return
    skip = pytest.mark.skip(reason="needs /dev/fuse and fusermount3")
    for item in items:
        if "fuse" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    """`rclone serve s3` on 127.0.0.1 and a free port, with a bucket `bkt`, stopped by pid."""
    server = S3Server(tmp_path / "s3", tmp_path / "rclone.log")
    server.bucket_dir("bkt")
    with server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> Path:
    """The folder behind s3://bkt: write files here to create objects."""
    return s3.bucket_dir("bkt")


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """Factory for real mounts; every one is unmounted at teardown, whatever happened."""
    mounts: list[Mount] = []

    def make(source: str = "s3://bkt", *args: str, server: S3Server | None = None,
             name: str = "mnt", start: bool = True, cache: str = "cache",
             env: dict[str, str] | None = None) -> Mount:  # fmt: skip
        m = Mount(source, tmp_path / name, tmp_path / cache, server, tuple(args), env)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    for m in reversed(mounts):
        m.stop()
