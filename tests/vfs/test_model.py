"""The filesystem model, awaited directly: no kernel, a local folder as the bucket."""

from __future__ import annotations

import os
import stat

import pytest
import trio

from artifactfs.cache.blocks import BlockCache
from artifactfs.errors import IsADirectory, NotADirectory, NotFound, ReadOnly, StaleObject
from artifactfs.fetch import BlockFetcher
from artifactfs.metrics import Metrics
from artifactfs.namespace import BucketNamespace
from artifactfs.store.local import LocalStore
from artifactfs.vfs import ROOT_INODE, FileSystemModel, ModelOptions

BLOCK = 64 << 10


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "bucket"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a.bin").write_bytes(os.urandom(10 * BLOCK + 123))
    (root / "dir" / "sub" / "b.txt").write_text("hello\n")
    (root / "top.txt").write_text("top\n")
    return root


def make_model(tmp_path, root, read_ahead=8 * BLOCK, ttl=60.0):
    metrics = Metrics()
    store = LocalStore(root)
    disk = BlockCache(tmp_path / "cache", 1 << 30)
    disk.load_index()
    fetcher = BlockFetcher(store, disk, metrics, BLOCK, 16 * BLOCK, max_prefetch=4)
    ns = BucketNamespace(store, metrics, metadata_ttl=ttl, negative_ttl=ttl)
    opts = ModelOptions(uid=1234, gid=5678, metadata_ttl=ttl, read_ahead_bytes=read_ahead)
    return FileSystemModel(ns, fetcher, "", opts), metrics


def test_lookup_getattr_and_readdir(tmp_path, tree):
    async def main():
        model, _ = make_model(tmp_path, tree)
        d = await model.lookup(ROOT_INODE, "dir")
        assert stat.S_ISDIR(d.mode) and d.uid == 1234 and d.gid == 5678
        a = await model.lookup(d.ino, "a.bin")
        assert stat.S_ISREG(a.mode) and a.mode & 0o777 == 0o444
        assert a.size == 10 * BLOCK + 123
        assert a.mtime_ns == (tree / "dir" / "a.bin").stat().st_mtime_ns
        fh = await model.opendir(d.ino)
        names = [name for _, name, _ in model.readdir(fh, 0)]
        assert names == ["a.bin", "sub"]
        assert [n for _, n, _ in model.readdir(fh, 1)] == ["sub"]
        model.releasedir(fh)
        with pytest.raises(NotFound):
            await model.lookup(d.ino, "missing")
        with pytest.raises(NotADirectory):
            await model.lookup(a.ino, "x")

    trio.run(main)


def test_read_whole_and_ranges(tmp_path, tree):
    content = (tree / "dir" / "a.bin").read_bytes()

    async def main():
        model, metrics = make_model(tmp_path, tree)
        d = await model.lookup(ROOT_INODE, "dir")
        a = await model.lookup(d.ino, "a.bin")
        fh, _ = await model.open(a.ino, writable=False)
        assert await model.read(fh, 0, len(content) + 999) == content
        for off, size in [
            (0, 1),
            (BLOCK - 1, 2),
            (3 * BLOCK + 5, 2 * BLOCK),
            (len(content) - 3, 10),
        ]:
            assert await model.read(fh, off, size) == content[off : off + size]
        assert await model.read(fh, len(content), 10) == b""
        model.release(fh)
        assert metrics.gets == 11  # every block fetched once

    trio.run(main)


def test_writes_are_refused_and_dirs_cannot_be_opened(tmp_path, tree):
    async def main():
        model, _ = make_model(tmp_path, tree)
        t = await model.lookup(ROOT_INODE, "top.txt")
        with pytest.raises(ReadOnly):
            await model.open(t.ino, writable=True)
        d = await model.lookup(ROOT_INODE, "dir")
        with pytest.raises(IsADirectory):
            await model.open(d.ino, writable=False)

    trio.run(main)


def test_replaced_object_fails_old_handle_and_new_open_sees_new(tmp_path, tree):
    path = tree / "dir" / "a.bin"

    async def main():
        model, _ = make_model(tmp_path, tree, read_ahead=0, ttl=0)
        d = await model.lookup(ROOT_INODE, "dir")
        a = await model.lookup(d.ino, "a.bin")
        fh, _ = await model.open(a.ino, writable=False)
        old = await model.read(fh, 0, 100)
        new_content = os.urandom(path.stat().st_size)
        path.write_bytes(new_content)
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        assert await model.read(fh, 0, 100) == old  # block 0 already cached: same version
        with pytest.raises(StaleObject):
            await model.read(fh, 5 * BLOCK, 100)
        fh2, keep_cache = await model.open(a.ino, writable=False)
        assert keep_cache is False  # the kernel must drop its pages of the old version
        assert await model.read(fh2, 5 * BLOCK, 100) == new_content[5 * BLOCK : 5 * BLOCK + 100]

    trio.run(main)


def test_concurrent_readers_of_one_block_cause_one_fetch(tmp_path, tree):
    async def main():
        model, metrics = make_model(tmp_path, tree, read_ahead=0)
        d = await model.lookup(ROOT_INODE, "dir")
        a = await model.lookup(d.ino, "a.bin")
        fhs = [(await model.open(a.ino, writable=False))[0] for _ in range(16)]
        results = []

        async def reader(fh):
            results.append(await model.read(fh, 3 * BLOCK + 10, 1000))

        async with trio.open_nursery() as n:
            for fh in fhs:
                n.start_soon(reader, fh)
        assert len(set(results)) == 1 and len(results) == 16
        assert metrics.gets == 1

    trio.run(main)


def test_sequential_reads_prefetch_and_random_reads_do_not(tmp_path, tree):
    async def main():
        model, metrics = make_model(tmp_path, tree, read_ahead=4 * BLOCK)
        d = await model.lookup(ROOT_INODE, "dir")
        a = await model.lookup(d.ino, "a.bin")
        async with trio.open_nursery() as n:
            model.fetcher.attach(n)
            fh, _ = await model.open(a.ino, writable=False)
            for off in (7 * BLOCK, 2 * BLOCK, 9 * BLOCK, 0):
                await model.read(fh, off, 4096)
            assert metrics.prefetch_started == 0
            fh2, _ = await model.open(a.ino, writable=False)
            for off in range(0, 6 * BLOCK, 16 << 10):
                await model.read(fh2, off, 16 << 10)
            await trio.sleep(0.2)
            assert metrics.prefetch_started >= 3
            assert metrics.prefetch_used >= 2
            n.cancel_scope.cancel()

    trio.run(main)


def test_forget_drops_nodes_but_keeps_root(tmp_path, tree):
    async def main():
        model, _ = make_model(tmp_path, tree)
        t = await model.lookup(ROOT_INODE, "top.txt")
        before = model.known_inodes
        model.forget(t.ino, 1)
        assert model.known_inodes == before - 1
        model.forget(ROOT_INODE, 1)
        assert (await model.getattr(ROOT_INODE)).ino == ROOT_INODE
        again = await model.lookup(ROOT_INODE, "top.txt")
        assert again.size == 4

    trio.run(main)


def test_archive_members_through_the_model_even_after_parents_are_forgotten(tmp_path):
    import io
    import tarfile

    from artifactfs.archives import ArchiveService

    root = tmp_path / "bucket"
    root.mkdir()
    with tarfile.open(root / "a.tar", "w") as tar:
        for name, data in {"x/y/z.txt": b"deep", "top.txt": b"top"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    async def main():
        metrics = Metrics()
        store = LocalStore(root)
        disk = BlockCache(tmp_path / "cache", 1 << 30)
        disk.load_index()
        archives = ArchiveService(store, tmp_path / "cache", metrics, disk, BLOCK)
        fetcher = BlockFetcher(store, disk, metrics, BLOCK, 16 * BLOCK)
        ns = BucketNamespace(store, metrics, archives=archives)
        opts = ModelOptions(uid=1, gid=1)
        model = FileSystemModel(ns, fetcher, "", opts, archives)
        with trio.fail_after(20):  # a hang here is the bug this test guards against
            await walk(model, metrics)

    async def walk(model, metrics):
        a = await model.lookup(ROOT_INODE, "a")
        assert stat.S_ISDIR(a.mode)
        x = await model.lookup(a.ino, "x")
        y = await model.lookup(x.ino, "y")
        model.forget(x.ino, 1)  # the kernel dropped the middle directory
        model.forget(a.ino, 1)
        z = await model.lookup(y.ino, "z.txt")
        fh, keep = await model.open(z.ino, writable=False)
        assert keep is True
        assert await model.read(fh, 0, 100) == b"deep"
        assert metrics.indexes_built == 1

    trio.run(main)
