"""The on-disk block cache, against a real directory (no kernel, no network)."""

import errno
import os

import pytest
import trio

from artifactfs.cache import blockfile, blocks
from artifactfs.cache.blocks import BlockCache, lock_cache_dir
from artifactfs.errors import CacheInUse

D1, D2 = bytes([1]) * 32, bytes([2]) * 32
BLOCK = 64 << 10
ON_DISK = blockfile.file_size(BLOCK)


def _cache(tmp_path, limit=10 * ON_DISK):
    c = BlockCache(tmp_path, limit)
    c.load_index()
    return c


def _files(tmp_path):
    return sorted(p for p in (tmp_path / "blocks").rglob("*") if p.is_file())


def test_put_then_get_returns_the_data(tmp_path):
    async def main():
        c = _cache(tmp_path)
        data = os.urandom(BLOCK)
        assert await c.put((D1, 0), data)
        assert await c.get((D1, 0), BLOCK) == data
        assert await c.get((D1, 1), BLOCK) is None

    trio.run(main)


def test_size_limit_is_enforced_on_add_down_to_low_water(tmp_path):
    async def main():
        c = _cache(tmp_path, limit=10 * ON_DISK)
        for i in range(25):
            await c.put((D1, i), os.urandom(BLOCK))
            assert c.stats().bytes <= c.limit
        on_disk = sum(p.stat().st_size for p in _files(tmp_path))
        assert on_disk == c.stats().bytes <= c.limit
        assert c.stats().evicted_blocks >= 15
        # least recently used went first: the newest block is still there
        assert (D1, 24) in c and (D1, 0) not in c

    trio.run(main)


def test_recently_read_blocks_survive_eviction(tmp_path):
    async def main():
        c = _cache(tmp_path, limit=4 * ON_DISK)
        for i in range(4):
            await c.put((D1, i), os.urandom(BLOCK))
        assert await c.get((D1, 0), BLOCK) is not None  # now most recently used
        await c.put((D1, 4), os.urandom(BLOCK))
        assert (D1, 0) in c
        assert (D1, 1) not in c

    trio.run(main)


def test_pinned_blocks_are_not_evicted(tmp_path):
    async def main():
        c = _cache(tmp_path, limit=4 * ON_DISK)
        for i in range(4):
            await c.put((D1, i), os.urandom(BLOCK))
        c._pins[(D1, 0)] += 1  # a reader is in the middle of reading it
        await c.put((D1, 4), os.urandom(BLOCK))
        assert (D1, 0) in c
        assert c.path_of((D1, 0)).exists()

    trio.run(main)


def test_index_is_rebuilt_from_disk_and_temp_files_dropped(tmp_path):
    async def fill():
        c = _cache(tmp_path)
        await c.put((D1, 0), b"a" * BLOCK)
        await c.put((D2, 3), b"b" * 100)

    trio.run(fill)
    leftover = tmp_path / "blocks" / "01" / "junk.123.tmp"
    leftover.write_bytes(b"half a block")

    async def reopen():
        c = _cache(tmp_path)
        assert c.stats().blocks == 2
        assert await c.get((D2, 3), 100) == b"b" * 100
        assert not leftover.exists()

    trio.run(reopen)


def test_corrupt_block_is_discarded(tmp_path, caplog):
    async def main():
        c = _cache(tmp_path)
        await c.put((D1, 0), os.urandom(BLOCK))
        path = c.path_of((D1, 0))
        raw = bytearray(path.read_bytes())
        raw[5000] ^= 0xFF
        path.write_bytes(bytes(raw))
        assert await c.get((D1, 0), BLOCK) is None
        assert not path.exists()
        assert (D1, 0) not in c
        assert c.stats().corrupt_blocks == 1

    trio.run(main)
    assert "corrupt cached block" in caplog.text


def test_truncated_block_is_discarded(tmp_path):
    async def main():
        c = _cache(tmp_path)
        await c.put((D1, 0), os.urandom(BLOCK))
        path = c.path_of((D1, 0))
        os.truncate(path, 1000)
        assert await c.get((D1, 0), BLOCK) is None

    trio.run(main)


def test_disk_full_serves_uncached_with_one_warning(tmp_path, monkeypatch, caplog):
    def full(path, block, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main():
        c = _cache(tmp_path)
        monkeypatch.setattr(blocks, "_write_file", full)
        for i in range(3):
            assert await c.put((D1, i), b"x" * 100) is False
        assert c.stats().blocks == 0

    trio.run(main)
    assert caplog.text.count("cache disk full") == 1


def test_lock_refuses_a_second_holder(tmp_path):
    fd = lock_cache_dir(tmp_path / "c")
    assert oct((tmp_path / "c").stat().st_mode & 0o777) == "0o700"
    try:
        # flock is per open file description: a second open in this process conflicts too
        with pytest.raises(CacheInUse, match=str(os.getpid())):
            lock_cache_dir(tmp_path / "c")
    finally:
        os.close(fd)
    os.close(lock_cache_dir(tmp_path / "c"))
