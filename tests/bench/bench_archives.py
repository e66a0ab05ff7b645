"""`make bench` (archives): artifactfs vs. what runners do today and vs. ratarmount.

Same loopback server (rclone serve s3), one run, medians of --runs:
(A) time to first byte of a 100 KiB member in the middle of a 1 GiB tar, cold;
(B) a 1 GiB .tar.gz: first access (index build) and later member reads with the
    index present but no blocks cached;
(C) reading every member of a 2,000-file workspace tar (also with the mount
    already live, and through ceiling.py's in-memory tree: the most any pyfuse3
    filesystem does on this machine);
(D) peak RSS of the daemon while indexing a 1,000,000-member tar.
Baselines: download the object (boto3, parallel multipart), `tar -x`, read;
ratarmount opening the same s3:// URL (from .venv-bench, if installed).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from artifactfs.devserver import S3Server
from tests.bench.bench_mount import drop_caches, timed
from tests.bench.ceiling import ceiling_mount
from tests.support import Mount, is_mounted, wait_until

MIB = 1 << 20
MEMBER = "middle/train.py"
ROOT = Path(__file__).resolve().parents[2]
RATARMOUNT = ROOT / ".venv-bench" / "bin" / "ratarmount"


def make_big_tar(path: Path, middle: bytes) -> None:
    """1 GiB: four 256 MiB members (random bytes) around a 100 KiB member."""
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for name, size in [("part0.bin", 256 * MIB), ("part1.bin", 256 * MIB),
                           ("middle/train.py", len(middle)),
                           ("part2.bin", 256 * MIB), ("part3.bin", 256 * MIB)]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = size
            f.write(info.tobuf(tarfile.PAX_FORMAT))
            if name.endswith(".py"):
                f.write(middle + bytes(-len(middle) % 512))
            else:
                for i in range(size // MIB):
                    f.write(block[i % 7 :] + block[: i % 7])
        f.write(bytes(1024))


def make_workspace_tar(path: Path, files: int = 2000) -> None:
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            data = os.urandom(1024 + (i * 7919) % 20_000)
            info = tarfile.TarInfo(f"src/pkg{i % 40}/mod{i}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def read_tree(root: Path) -> int:
    """Read every file under `root` the way a training script walks its workspace."""
    n = 0
    for p in root.rglob("*"):
        if p.is_file():
            n += len(p.read_bytes())
    return n


def make_million_tar(path: Path, members: int) -> None:
    with open(path, "wb") as f:
        info = tarfile.TarInfo()
        for i in range(members):
            info.name = f"d{i // 1000:04d}/f{i:07d}"
            f.write(info.tobuf(tarfile.GNU_FORMAT))
        f.write(bytes(1024))


def download_extract_read(client, key: str, work: Path, member: str | None) -> float:
    """What a runner does today: whole object to disk, tar -x, then read."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    client.download_file("bkt", key, str(work / "a"))
    subprocess.run(["tar", "-xf", str(work / "a"), "-C", str(work)], check=True)
    if member:
        (work / member).read_bytes()
    else:
        for p in work.rglob("*"):
            if p.is_file() and p.name != "a":
                p.read_bytes()
    elapsed = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


def artifactfs_first_byte(server: S3Server, work: Path, path: str, cache: Path,
                          mounted_first: bool = False) -> float:  # fmt: skip
    """From `artifactfs mount` (or, with mounted_first, from a live cold mount) to a byte."""
    start = time.perf_counter()
    with Mount("s3://bkt", work / "mnt", cache, server):
        if mounted_first:
            start = time.perf_counter()
        with open(work / "mnt" / path, "rb") as f:
            f.read(1)
        return time.perf_counter() - start


def ratarmount_first_byte(server: S3Server, work: Path, key: str, member: str) -> float | None:
    if not RATARMOUNT.exists():
        return None
    mnt = work / "rat"
    mnt.mkdir(exist_ok=True)
    env = dict(os.environ, **server.client_env(), FSSPEC_S3_ENDPOINT_URL=server.endpoint_url)
    start = time.perf_counter()
    proc = subprocess.Popen([str(RATARMOUNT), "-f", f"s3://bkt/{key}", str(mnt)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        if not wait_until(lambda: is_mounted(mnt), timeout=600, interval=0.01):
            return None
        with open(mnt / member, "rb") as f:
            f.read(1)
        return time.perf_counter() - start
    finally:
        for flag in ("-u", "-uz"):
            if is_mounted(mnt):
                subprocess.run(["fusermount3", flag, str(mnt)], capture_output=True)
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--million", type=int, default=1_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="artifactfs-bench-arch-"))
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        server = S3Server(work / "s3", work / "rclone.log", etag_hash="", log_requests=False)
        bucket = server.bucket_dir("bkt")
        middle = os.urandom(100 * 1024)
        print("making the corpora ...", flush=True)
        make_big_tar(bucket / "big.tar", middle)
        subprocess.run(f"gzip -1 -c {bucket / 'big.tar'} > {bucket / 'bigz.tar.gz'}",
                       shell=True, check=True)  # fmt: skip
        make_workspace_tar(bucket / "ws.tar")
        make_million_tar(bucket / "million.tar", args.million)
        with server:
            client = boto3.client(
                "s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                config=Config(s3={"addressing_style": "path"}),
            )  # fmt: skip

            # (A) first byte of a member in the middle of a 1 GiB tar
            base, ours, rat, live = [], [], [], []
            for run in range(args.runs):
                drop_caches()
                base.append(
                    download_extract_read(client, "big.tar", work / "dl", "middle/train.py")
                )
                drop_caches()
                shutil.rmtree(work / "cache", ignore_errors=True)
                ours.append(
                    artifactfs_first_byte(server, work, "big/middle/train.py", work / "cache")
                )
                drop_caches()
                shutil.rmtree(work / "cache", ignore_errors=True)
                live.append(
                    artifactfs_first_byte(
                        server, work, f"big/{MEMBER}", work / "cache", mounted_first=True
                    )
                )
                drop_caches()
                r = ratarmount_first_byte(server, work, "big.tar", "middle/train.py")
                if r is not None:
                    rat.append(r)
                print(f"(A) run {run}: download+extract {base[-1]:.2f}s artifactfs "
                      f"{ours[-1]:.3f}s ratarmount {rat[-1] if rat else float('nan'):.2f}s",
                      flush=True)  # fmt: skip
            b, o = statistics.median(base), statistics.median(ours)
            rows.append(
                (
                    "(A) first byte, 100 KiB member of 1 GiB tar, cold, mount included",
                    f"{o * 1000:.0f} ms",
                    f"{b:.2f} s",
                    f"{b / o:.0f}x faster",
                    ">= 50x",
                )
            )
            lv = statistics.median(live)
            rows.append(("(A) same, from a live cold mount (list+index+read)",
                         f"{lv * 1000:.0f} ms", f"{b:.2f} s", f"{b / lv:.0f}x faster",
                         ">= 50x"))  # fmt: skip
            if rat:
                rr = statistics.median(rat)
                rows.append(("(A) same, vs ratarmount s3://", f"{o * 1000:.0f} ms", f"{rr:.2f} s",
                             f"{rr / o:.1f}x faster", "> 1x"))  # fmt: skip

            # (B) 1 GiB .tar.gz
            base, first, later = [], [], []
            for run in range(args.runs):
                drop_caches()
                base.append(download_extract_read(client, "bigz.tar.gz", work / "dl",
                                                  "middle/train.py"))  # fmt: skip
                shutil.rmtree(work / "cache-gz", ignore_errors=True)
                drop_caches()
                first.append(artifactfs_first_byte(server, work, f"bigz/{MEMBER}",
                                                   work / "cache-gz"))  # fmt: skip
                print(f"(B) run {run}: download+extract {base[-1]:.2f}s first access "
                      f"{first[-1]:.2f}s", flush=True)  # fmt: skip
            # the index stays; the decoded blocks go
            shutil.rmtree(work / "cache-gz" / "blocks", ignore_errors=True)
            with Mount("s3://bkt", work / "mnt", work / "cache-gz", server) as m:
                for name in ("part0.bin", "middle/train.py", "part3.bin"):
                    start = time.perf_counter()
                    with open(m.path / "bigz" / name, "rb") as f:
                        f.read(1)
                    later.append(time.perf_counter() - start)
            b, f1 = statistics.median(base), statistics.median(first)
            rows.append(("(B) 1 GiB .tar.gz, first access (index build)", f"{f1:.2f} s",
                         f"{b:.2f} s", f"{f1 / b:.2f}x the time", "<= 1.2x"))  # fmt: skip
            rows.append(("(B) later member read, index kept, no blocks",
                         f"{statistics.median(later) * 1000:.0f} ms", "-",
                         f"max {max(later) * 1000:.0f} ms", "< 100 ms"))  # fmt: skip

            # (C) every member of a 2,000-file workspace; then with the mount already
            # live, and through the least a pyfuse3 filesystem can do (from memory)
            base, ours, ours_live, ceiling = [], [], [], []
            for _ in range(args.runs):
                drop_caches()
                base.append(download_extract_read(client, "ws.tar", work / "dl", None))
                shutil.rmtree(work / "cache-ws", ignore_errors=True)
                drop_caches()
                start = time.perf_counter()
                with Mount("s3://bkt", work / "mnt", work / "cache-ws", server) as m:
                    read_tree(m.path / "ws")
                    ours.append(time.perf_counter() - start)
                shutil.rmtree(work / "cache-ws", ignore_errors=True)
                with Mount("s3://bkt", work / "mnt", work / "cache-ws", server) as m:
                    drop_caches()
                    ours_live.append(timed(lambda m=m: read_tree(m.path / "ws")))
                with ceiling_mount("tree", work / "ceil", [str(bucket / "ws.tar")]) as path:
                    drop_caches()
                    ceiling.append(timed(lambda p=path: read_tree(p)))
            b, o = statistics.median(base), statistics.median(ours)
            rows.append(("(C) read all of a 2,000-file workspace tar", f"{o:.2f} s",
                         f"{b:.2f} s", f"{o / b:.2f}x the time", "<= 1x"))  # fmt: skip
            o = statistics.median(ours_live)
            rows.append(("(C) same, mount already live, cold cache", f"{o:.2f} s",
                         f"{b:.2f} s", f"{o / b:.2f}x the time", "-"))  # fmt: skip
            o = statistics.median(ceiling)
            rows.append(("(C) pyfuse3 ceiling: the same tree from memory, mount live",
                         f"{o:.2f} s", f"{b:.2f} s", f"{o / b:.2f}x the time", "-"))  # fmt: skip

            # (D) RSS while indexing a million members
            with Mount("s3://bkt", work / "mnt", work / "cache-m", server) as m:
                start = time.perf_counter()
                n = len(os.listdir(m.path / "million"))
                n += len(os.listdir(m.path / "million" / "d0500"))
                took = time.perf_counter() - start
                with open(f"/proc/{m.pid}/status") as f:
                    hwm = next(int(x.split()[1]) // 1024 for x in f if x.startswith("VmHWM"))
            rows.append((f"(D) index {args.million:,} members: peak RSS", f"{hwm} MiB", "-",
                         f"indexed in {took:.0f} s", "< 300 MiB"))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nmedians of {args.runs} runs; page cache dropped between runs; rclone serve s3 "
        f"on loopback; ratarmount: {'yes' if RATARMOUNT.exists() else 'not installed'}"
    )
    print("| case | artifactfs | baseline | result | goal |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
