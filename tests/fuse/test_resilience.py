"""Faults a mount must survive: stalls, SlowDown bursts, resets, SIGKILL, a full cache
disk, objects replaced under readers. Each with a real S3 server and a real mount;
`make faults` runs them longer (ARTIFACTFS_SOAK) and records figures."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.reliability import pattern, record, scale, versions_in
from tests.support import CLI, is_mounted, wait_until

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def figures(m) -> dict:
    done = subprocess.run([*CLI, "stat", str(m.path), "--json"], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    return json.loads(done.stdout)


@pytest.fixture
def proxy(s3):
    with FaultProxy(s3.port) as p:
        yield p


def proxied_mount(mount, s3, proxy, *args: str):
    return mount("s3://bkt", "--endpoint-url", proxy.endpoint_url, *args, server=s3)


def test_a_stalled_get_is_abandoned_and_retried_within_its_deadline(s3, bucket, mount, proxy):
    data = pattern(1, 16 * MiB)
    (bucket / "obj").write_bytes(data)
    m = proxied_mount(mount, s3, proxy, "--request-timeout", "9", "--read-ahead", "0")
    proxy.inject(Fault("stall", after_bytes=MiB, min_range=MiB))  # a block GET freezes
    started = time.monotonic()
    assert (m.path / "obj").read_bytes() == data
    took = time.monotonic() - started
    assert proxy.counts["stall"] == 1
    assert took < 9, f"took {took:.1f} s"
    f = figures(m)
    assert f["counters"]["retries"] >= 1 and f["store_errors"].get("StoreUnavailable", 0) >= 1

    # a store whose every GET of data stalls: EIO within the deadline, the daemon lives on
    (bucket / "other").write_bytes(pattern(2, 4 * MiB))
    os.stat(m.path / "other")  # metadata first: this case is about data
    proxy.inject(Fault("stall", min_range=1), count=1000)
    started = time.monotonic()
    with pytest.raises(OSError) as eio:
        (m.path / "other").read_bytes()
    assert eio.value.errno == errno.EIO
    stalled_for = time.monotonic() - started
    assert stalled_for < 9 + 5, f"EIO after {stalled_for:.1f} s"
    proxy.clear()
    time.sleep(0.6)  # a failed block is answered from memory for 0.5 s (the kernel retries)
    assert (m.path / "other").read_bytes() == pattern(2, 4 * MiB)
    record("stalled GET", recovered_in_s=round(took, 2), eio_after_s=round(stalled_for, 2),
           retries=f["counters"]["retries"])  # fmt: skip


def test_slowdown_bursts_and_resets_are_retried_then_eio_and_counted(s3, bucket, mount, proxy):
    (bucket / "a").write_bytes(pattern(1, 3 * MiB))
    (bucket / "b").write_bytes(pattern(2, 3 * MiB))
    (bucket / "c").write_bytes(pattern(3, 3 * MiB))
    m = proxied_mount(mount, s3, proxy, "--request-timeout", "8", "--max-attempts", "4")
    proxy.inject(Fault("503"), count=2)
    proxy.inject(Fault("500"))
    assert (m.path / "a").read_bytes() == pattern(1, 3 * MiB)
    assert proxy.counts["503"] == 2 and proxy.counts["500"] == 1
    proxy.inject(Fault("reset"), count=2)
    assert (m.path / "b").read_bytes() == pattern(2, 3 * MiB)
    assert proxy.counts["reset"] == 2
    f = figures(m)
    assert f["counters"]["retries"] >= 5  # each answered fault was retried

    os.stat(m.path / "c")
    proxy.inject(Fault("503", min_range=1), count=10_000)  # every data GET: SlowDown
    started = time.monotonic()
    with pytest.raises(OSError) as eio:
        (m.path / "c").read_bytes()
    assert eio.value.errno == errno.EIO
    gave_up = time.monotonic() - started
    assert gave_up < 8 + 5
    after = figures(m)
    assert after["counters"]["retries"] > f["counters"]["retries"]
    assert sum(after["store_errors"].values()) >= 1  # StoreUnavailable or Timeout
    assert "no answer within 8 s (last: server error SlowDown)" in m.log()
    proxy.clear()
    time.sleep(0.6)
    assert (m.path / "c").read_bytes() == pattern(3, 3 * MiB)
    record("SlowDown and resets", injected_503=proxy.counts["503"], injected_500=1,
           injected_resets=proxy.counts["reset"], retries=after["counters"]["retries"],
           eio_after_s=round(gave_up, 2))  # fmt: skip


def test_sigkill_mid_read_leaves_a_cache_that_verifies_and_serves_right_bytes(s3, bucket, mount):
    size = 48 * MiB
    (bucket / "big").write_bytes(pattern(7, size))
    (bucket / "warm").write_bytes(pattern(8, 16 * MiB))
    m = mount(server=s3)
    assert (m.path / "warm").read_bytes() == pattern(8, 16 * MiB)
    verify = [*CLI, "cache", "verify", str(m.cache_dir)]
    assert wait_until(lambda: "2 blocks verify" in subprocess.run(
        verify, capture_output=True, text=True).stdout, 10)  # fmt: skip
    errors: list[BaseException] = []

    def read() -> None:
        try:
            (m.path / "big").read_bytes()
        except OSError as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert wait_until(lambda: len(s3.requests("GET OBJECT")) >= 4, 20)
    os.kill(m.pid, signal.SIGKILL)  # with blocks in flight and in the write-behind queue
    reader.join(30)
    assert not reader.is_alive()
    done = subprocess.run([*CLI, "umount", str(m.path)], capture_output=True, text=True)
    assert done.returncode == 0 and not is_mounted(m.path)
    verified = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and " 0 corrupt" in verified.stdout, verified.stdout
    good = int(verified.stdout.rsplit(": ", 1)[1].split()[0])
    assert good >= 2
    m.start()
    assert (m.path / "big").read_bytes() == pattern(7, size)  # nothing corrupt is served
    record("SIGKILL mid-read", blocks_verified=good, corrupt=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_cache_disk_serves_reads_uncached_with_one_warning(s3, bucket, mount, tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], check=True)
    try:
        data = pattern(5, 64 * MiB)
        (bucket / "big").write_bytes(data)
        m = mount("s3://bkt", "--cache-size", "1G", server=s3, cache="small-disk/cache")
        assert (m.path / "big").read_bytes() == data
        assert (m.path / "big").read_bytes() == data
        m.stop()
        assert m.log().count("cache disk full") == 1
        leftovers = [p for p in (disk / "cache").rglob("*") if ".tmp" in p.name]
        assert leftovers == []  # no partial block kept
        verified = subprocess.run([*CLI, "cache", "verify", str(disk / "cache")],
                                  capture_output=True, text=True)  # fmt: skip
        assert verified.returncode == 0, verified.stdout
        record("cache disk full", read_mib=128, warnings=1, partial_blocks=0)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_replacing_an_object_under_readers_never_mixes_versions(s3, bucket, mount):
    size = 32 * MiB
    obj = bucket / "model.bin"
    obj.write_bytes(pattern(1, size))
    # no read-ahead and a small memory budget: readers fetch blocks after the replacement
    m = mount("s3://bkt", "--read-ahead", "0", "--memory-budget", "16M", server=s3)
    rounds = max(1, int(3 * scale()))
    mixed, stale, checked = [], 0, 0
    lock = threading.Lock()

    def reader(seed: int) -> None:
        nonlocal stale, checked
        try:
            with open(m.path / "model.bin", "rb") as f:
                seen: set[int] = set()
                offset = (seed * 3 * MiB) % size
                while offset < size:
                    chunk = f.read(512 << 10) if f.tell() == offset else os.pread(
                        f.fileno(), 512 << 10, offset)  # fmt: skip
                    if not chunk:
                        break
                    seen |= versions_in(chunk, offset)
                    offset += len(chunk)
                    time.sleep(0.002)
                with lock:
                    checked += 1
                    if len(seen) > 1:
                        mixed.append(seen)
        except OSError as exc:
            if exc.errno != errno.ESTALE:
                raise
            with lock:
                stale += 1

    for version in range(2, 2 + rounds):
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        tmp = bucket / ".model.tmp"
        tmp.write_bytes(pattern(version, size))
        os.replace(tmp, obj)  # atomic, as an S3 PUT is
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a reader hung"
        time.sleep(1.2)  # --metadata-ttl: a new open sees the new version
        assert versions_in((m.path / "model.bin").read_bytes(), 0) == {version}
    assert mixed == [], f"reads mixing versions: {mixed}"
    record("object replaced under readers", handles=checked + stale, estale=stale,
           mixed_reads=0, replacements=rounds)  # fmt: skip
