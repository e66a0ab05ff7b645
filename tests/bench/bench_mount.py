"""`make bench`: artifactfs against baselines measured in the same run, same loopback server.

(a) cold sequential read of a 1 GiB object through the mount, vs. boto3 with
    8 parallel 8 MiB ranged GETs from the same gateway (the ceiling here);
(b) warm read (blocks cached, page cache dropped) vs. reading a local file;
(c) `find` stating 10,000 objects through the mount vs. a boto3 listing.
Each figure is the median of several runs; the daemon's peak RSS (VmHWM)
during (a) is reported too. Needs root for dropping the page cache.

(a) is also run through the least a pyfuse3 filesystem can do (ceiling.py:
the same 8 parallel ranged GETs, answered from memory, through the page
cache and with direct I/O), which is the most any pyfuse3 daemon reaches
on the machine the benchmark runs on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from artifactfs.devserver import S3Server
from tests.bench.ceiling import ceiling_mount
from tests.support import Mount

MIB = 1 << 20


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_file(path: Path, bufsize: int = MIB) -> int:
    buf = bytearray(bufsize)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
    return total


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boto_client(server: S3Server):
    return boto3.client(
        "s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )  # fmt: skip


def boto_parallel_read(client, key: str, size: int, part: int = 8 * MIB) -> int:
    def get(off: int) -> int:
        end = min(off + part, size) - 1
        body = client.get_object(Bucket="bkt", Key=key, Range=f"bytes={off}-{end}")["Body"]
        return len(body.read())

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(get, range(0, size, part)))


def boto_list(client, prefix: str) -> int:
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix=prefix):
        n += len(page.get("Contents", ()))
    return n


def find_stat(path: Path) -> int:
    out = subprocess.run(["find", str(path), "-type", "f", "-printf", "%s %T@\n"],
                         capture_output=True, check=True).stdout  # fmt: skip
    return out.count(b"\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default=1024, type=int, help="MiB of the big object (default 1024)")
    ap.add_argument("--runs", default=3, type=int)
    ap.add_argument("--objects", default=10_000, type=int)
    args = ap.parse_args()
    size = args.size * MIB
    work = Path(tempfile.mkdtemp(prefix="artifactfs-bench-"))
    results: list[tuple[str, str, float, float, float, str]] = []
    try:
        # rclone computes an MD5 ETag by reading the whole file on every request unless told
        # not to; the daemon then identifies versions by size and Last-Modified.
        server = S3Server(work / "s3", work / "rclone.log", etag_hash="", log_requests=False)
        bucket = server.bucket_dir("bkt")
        big = bucket / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size):
                f.write(os.urandom(MIB))
        for d in range(10):
            sub = bucket / "many" / f"d{d}"
            sub.mkdir(parents=True)
            for i in range(args.objects // 10):
                (sub / f"o{i:05d}").write_bytes(b"x")
        can_drop = drop_caches()
        with server:
            client = boto_client(server)
            boto_parallel_read(client, "big.bin", size)  # warm the server's page cache

            base_a, mount_a, rss, cpu_daemon, cpu_server = [], [], [], [], []
            ceil_a: list[float] = []
            ceil_direct_a: list[float] = []
            cache = work / "cache-a"
            for run in range(args.runs):
                shutil.rmtree(cache, ignore_errors=True)
                base_a.append(timed(lambda: boto_parallel_read(client, "big.bin", size)))
                with Mount("s3://bkt", work / "mnt", cache, server) as m:
                    d0, s0 = cpu_seconds(m.pid), cpu_seconds(server.proc.pid)
                    mount_a.append(timed(lambda m=m: read_file(m.path / "big.bin")))
                    rss.append(peak_rss_mib(m.pid))
                    cpu_daemon.append(cpu_seconds(m.pid) - d0)
                    cpu_server.append(cpu_seconds(server.proc.pid) - s0)
                for direct, times in ((False, ceil_a), (True, ceil_direct_a)):
                    args_c = [server.endpoint_url, "bkt", "big.bin", str(size)]
                    args_c += ["--direct-io"] if direct else []
                    env = dict(os.environ, **server.client_env())
                    with ceiling_mount("readthrough", work / "ceil", args_c, env) as path:
                        drop_caches()
                        times.append(timed(lambda p=path: read_file(p / "big")))
                print(f"(a) run {run}: boto3 {base_a[-1]:.2f}s mount {mount_a[-1]:.2f}s "
                      f"peak RSS {rss[-1]:.0f} MiB; pyfuse3 ceiling {ceil_a[-1]:.2f}s, "
                      f"direct I/O {ceil_direct_a[-1]:.2f}s", flush=True)  # fmt: skip
            ta, tb = statistics.median(mount_a), statistics.median(base_a)
            results.append(("(a) cold sequential 1 GiB", "boto3 8x8MiB ranged GETs",
                            size / MIB / ta, size / MIB / tb, tb / ta, ">= 0.8"))  # fmt: skip
            for label, times in (("pyfuse3 ceiling, page cache", ceil_a),
                                 ("pyfuse3 ceiling, direct I/O", ceil_direct_a)):  # fmt: skip
                tc = statistics.median(times)
                results.append((f"    {label}", "same", size / MIB / tc, size / MIB / tb,
                                tb / tc, "-"))  # fmt: skip
            results.append(
                ("daemon peak RSS during (a)", "max of the runs", max(rss), 0, 0, "< 250")
            )

            base_b, mount_b = [], []
            for run in range(args.runs):
                drop_caches()
                base_b.append(timed(lambda: read_file(big)))
                with Mount("s3://bkt", work / "mnt", cache, server) as m:
                    drop_caches()
                    mount_b.append(timed(lambda m=m: read_file(m.path / "big.bin")))
                print(f"(b) run {run}: local {base_b[-1]:.2f}s mount {mount_b[-1]:.2f}s",
                      flush=True)  # fmt: skip
            ta, tb = statistics.median(mount_b), statistics.median(base_b)
            results.append(("(b) warm read, page cache dropped", "local file read",
                            size / MIB / ta, size / MIB / tb, tb / ta, ">= 0.7"))  # fmt: skip

            base_c, mount_c = [], []
            for run in range(args.runs):
                base_c.append(timed(lambda: boto_list(client, "many/")))
                with Mount("s3://bkt", work / "mnt", work / "cache-c", server) as m:
                    n = 0

                    def walk(m=m) -> None:
                        nonlocal n
                        n = find_stat(m.path / "many")

                    mount_c.append(timed(walk))
                    assert n == args.objects, n
                print(f"(c) run {run}: boto3 list {base_c[-1]:.2f}s find {mount_c[-1]:.2f}s",
                      flush=True)  # fmt: skip
            ta, tb = statistics.median(mount_c), statistics.median(base_c)
            results.append((f"(c) find+stat {args.objects:,} objects", "boto3 listing (s)",
                            ta, tb, ta / tb, "<= 1.5"))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"page cache dropped between runs: {'yes' if can_drop else 'NO (not root)'}; "
        f"median of {args.runs} runs; default options; rclone serve s3 on loopback"
    )
    print(f"| {'case':34} | {'baseline':25} | {'artifactfs':>13} | {'baseline':>13} | "
          f"{'ratio':>5} | {'goal':6} |")  # fmt: skip
    print(f"|{'-' * 36}|{'-' * 27}|{'-' * 15}|{'-' * 15}|{'-' * 7}|{'-' * 8}|")
    for case, baseline, mine, theirs, ratio, goal in results:
        unit = " MiB" if "RSS" in case else (" s" if "find" in case else " MiB/s")
        ours = f"{mine:.1f}{unit}"
        base = "-" if "RSS" in case else f"{theirs:.1f}{unit}"
        rat = "-" if "RSS" in case else f"{ratio:.2f}"
        print(f"| {case:34} | {baseline:25} | {ours:>13} | {base:>13} | {rat:>5} | {goal:6} |")
    print(f"\n(a) CPU seconds per run, medians: daemon {statistics.median(cpu_daemon):.2f}, "
          f"server {statistics.median(cpu_server):.2f} (2 cores in all)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
