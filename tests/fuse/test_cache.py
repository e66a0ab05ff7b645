"""The persistent block cache seen through a real mount; requests counted at the server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.support import wait_until

pytestmark = pytest.mark.fuse
MIB = 1 << 20


def _gets(s3, key: str) -> int:
    return sum(1 for r in s3.requests("GET OBJECT") if r.endswith(f"Object: {key}"))


def _block_files(cache: Path) -> list[Path]:
    return [p for p in (cache / "blocks").rglob("*") if p.is_file()]


def test_cache_survives_remount_with_zero_gets(s3, bucket, mount):
    data = os.urandom(20 * MIB + 5)
    (bucket / "warm.bin").write_bytes(data)
    m = mount(server=s3)
    assert (m.path / "warm.bin").read_bytes() == data
    first = _gets(s3, "warm.bin")
    assert first == 3  # 8 MiB blocks (the default): three ranged GETs
    m.stop()
    m.start()
    assert (m.path / "warm.bin").read_bytes() == data
    assert _gets(s3, "warm.bin") == first  # served from disk: no GET reached the server


def test_eviction_keeps_the_cache_under_its_limit(s3, bucket, mount):
    data = os.urandom(6 * MIB)
    (bucket / "big.bin").write_bytes(data)
    limit = 1 * MIB
    m = mount("s3://bkt", "--cache-size", "1M", "--block-size", "64K", server=s3)
    assert (m.path / "big.bin").read_bytes() == data
    total = sum(p.stat().st_size for p in _block_files(m.cache_dir))
    assert 0 < total <= limit
    assert len(_block_files(m.cache_dir)) < 6 * MIB // (64 << 10)


def test_corrupt_block_file_is_detected_and_fetched_again(s3, bucket, mount):
    data = os.urandom(8 * MIB)
    (bucket / "c.bin").write_bytes(data)
    m = mount(server=s3)
    assert (m.path / "c.bin").read_bytes() == data
    m.stop()
    before = _gets(s3, "c.bin")
    victim = sorted(_block_files(m.cache_dir))[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    victim.write_bytes(bytes(raw))
    m.start()
    assert (m.path / "c.bin").read_bytes() == data
    assert _gets(s3, "c.bin") == before + 1  # only the damaged block was fetched again
    assert "corrupt cached block" in m.log()


def test_concurrent_readers_of_a_missing_block_cause_one_get(s3, bucket, mount):
    data = os.urandom(4 * MIB)
    (bucket / "one.bin").write_bytes(data)
    m = mount("s3://bkt", "--read-ahead", "0", server=s3)
    barrier = threading.Barrier(16)
    results: dict[int, bytes] = {}

    def reader(i: int) -> None:
        fd = os.open(m.path / "one.bin", os.O_RDONLY)
        try:
            barrier.wait(10)
            results[i] = os.pread(fd, 4096, i * 256 * 1024)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results[i] == data[i * 256 * 1024 : i * 256 * 1024 + 4096] for i in range(16))
    assert _gets(s3, "one.bin") == 1


def test_sequential_read_fetches_ahead_in_parallel(s3, bucket, mount):
    data = os.urandom(40 * MIB)
    (bucket / "seq.bin").write_bytes(data)
    m = mount(server=s3)
    with open(m.path / "seq.bin", "rb") as f:
        assert f.read(MIB) == data[:MIB]
        # read-ahead runs in the background: blocks beyond the one read arrive on their own
        assert wait_until(lambda: _gets(s3, "seq.bin") >= 3, timeout=10)
        assert f.read() == data[MIB:]


def test_random_reads_do_not_fetch_ahead(s3, bucket, mount):
    data = os.urandom(64 * MIB)
    (bucket / "rnd.bin").write_bytes(data)
    m = mount(server=s3)
    fd = os.open(m.path / "rnd.bin", os.O_RDONLY)
    try:
        for off in (50 * MIB, 10 * MIB, 33 * MIB, 2 * MIB + 7):
            assert os.pread(fd, 4096, off) == data[off : off + 4096]
    finally:
        os.close(fd)
    assert _gets(s3, "rnd.bin") == 4
