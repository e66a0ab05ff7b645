"""64 concurrent readers over archive members and plain objects, for a fixed time.

Every byte read is checked (the content encodes its version and offset), every
reader must finish, and the daemon's RSS is sampled throughout. `make test`
runs it for a few seconds; `make faults` for a minute (ARTIFACTFS_SOAK).
"""

from __future__ import annotations

import io
import os
import random
import statistics
import tarfile
import threading
import time

import pytest

from tests.reliability import pattern, record, rss_kib, scale, versions_in

pytestmark = pytest.mark.fuse

MiB = 1 << 20
READERS = 64


def test_64_readers_get_right_bytes_with_bounded_memory(s3, bucket, mount):
    objects = {f"plain/{i}.bin": (100 + i, (3 + i % 5) * MiB + 4096 * i) for i in range(8)}
    for key, (version, size) in objects.items():
        (bucket / key).parent.mkdir(exist_ok=True)
        (bucket / key).write_bytes(pattern(version, size))
    members = {f"shard-{i:02d}.bin": (200 + i, MiB + 512 * i) for i in range(24)}
    with tarfile.open(bucket / "dataset.tar", "w") as tar:
        for name, (version, size) in members.items():
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(pattern(version, size)))
    files = {f"plain/{k.split('/')[1]}": v for k, v in objects.items()}
    files.update({f"dataset/{k}": v for k, v in members.items()})
    m = mount("s3://bkt", "--memory-budget", "64M", server=s3)

    duration = 4.0 * scale()
    stop_at = time.monotonic() + duration
    latencies: list[float] = []
    wrong: list[str] = []
    ops = [0]
    lock = threading.Lock()
    rss: list[int] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        names = sorted(files)
        mine: list[float] = []
        count = 0
        while time.monotonic() < stop_at:
            name = rng.choice(names)
            version, size = files[name]
            with open(m.path / name, "rb") as f:
                if seed % 2:  # random reads
                    for _ in range(8):
                        off, n = rng.randrange(size), rng.choice((4096, 65536, 300_000))
                        t = time.perf_counter()
                        data = os.pread(f.fileno(), n, off)
                        mine.append(time.perf_counter() - t)
                        count += 1
                        if data != pattern(version, min(n, size - off), off):
                            wrong.append(f"{name}@{off}+{n}")
                else:  # sequential, in 1 MiB reads
                    off = 0
                    while off < size and time.monotonic() < stop_at:
                        t = time.perf_counter()
                        data = f.read(MiB)
                        mine.append(time.perf_counter() - t)
                        count += 1
                        if versions_in(data, off) != {version}:
                            wrong.append(f"{name}@{off}")
                        off += len(data)
        with lock:
            latencies.extend(mine)
            ops[0] += count

    def sample() -> None:
        while time.monotonic() < stop_at + 1:
            rss.append(rss_kib(m.pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    hung = sum(t.is_alive() for t in threads)
    elapsed = time.monotonic() - started
    sampler.join(5)

    assert hung == 0, f"{hung} readers hung"
    assert wrong == [], f"wrong bytes at {wrong[:5]}"
    quantiles = statistics.quantiles(latencies, n=100)
    peak = max(rss) // 1024
    # bounded: the memory budget plus read-ahead in flight and the interpreter, not the data
    assert peak < 400, f"daemon RSS peaked at {peak} MiB"
    figures = {"readers": READERS, "seconds": round(elapsed, 1), "ops": ops[0],
               "ops_per_s": round(ops[0] / elapsed), "p50_ms": round(quantiles[49] * 1000, 2),
               "p99_ms": round(quantiles[98] * 1000, 2), "wrong_bytes": 0, "hung_readers": 0,
               "peak_rss_mib": peak}  # fmt: skip
    print(figures)
    record("64 readers", **figures)
