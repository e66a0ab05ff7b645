"""The least work a pyfuse3 filesystem can do, to measure the binding's ceiling in `make bench`.

Two filesystems that do nothing artifactfs must do (no cache, no checksum,
no index, no version checks), so what they reach is the most any pyfuse3
daemon can reach on the machine running the benchmark:

- `readthrough MOUNTPOINT ENDPOINT BUCKET KEY SIZE`: one file, `big`, read
  with 8 parallel 8 MiB ranged GETs ahead of the reader (boto3, the same as
  the baseline) and answered from memory with zero-copy views. Add
  `--direct-io` to bypass the page cache (FOPEN_DIRECT_IO).
- `tree MOUNTPOINT TARFILE`: every member of a local tar, from memory.

Credentials come from the environment. Runs in the foreground until unmounted;
the benchmarks start it with `ceiling_mount`, which gives it the same kernel
read-ahead as an artifactfs mount.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyfuse3
import trio
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from artifactfs.kernel import tune_mount
from artifactfs.options import MountOptions
from tests.support import is_mounted

BLOCK = 8 << 20
AHEAD = 8
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MountOptions)}


@contextlib.contextmanager
def ceiling_mount(
    kind: str, mountpoint: Path, args: list[str], env: dict[str, str] | None = None
) -> Iterator[Path]:
    """Run one of these filesystems at `mountpoint`; unmount it and wait for it on exit."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, kind, str(mountpoint), *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} ceiling filesystem did not mount")
            time.sleep(0.02)
        tune_mount(mountpoint, os.stat(mountpoint).st_dev,
                   _DEFAULTS["kernel_read_ahead"] // 1024, _DEFAULTS["max_background"])  # fmt: skip
        yield mountpoint
    finally:
        for flag in ("-u", "-uz"):
            if is_mounted(mountpoint):
                subprocess.run(["fusermount3", flag, str(mountpoint)], capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _attrs(ino: int, size: int, is_dir: bool) -> pyfuse3.EntryAttributes:
    a = pyfuse3.EntryAttributes()
    a.st_ino = ino
    a.entry_timeout = a.attr_timeout = 300
    a.st_mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644)
    a.st_nlink = 2 if is_dir else 1
    a.st_size = size
    a.st_blksize = 1 << 20
    return a


class ReadThrough(pyfuse3.Operations):
    """One object, fetched ahead in parallel ranged GETs, served from memory."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, direct_io: bool):
        super().__init__()
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.direct_io = direct_io
        self.blocks: dict[int, bytes] = {}
        self.pending: dict[int, trio.Event] = {}
        self.limiter = trio.CapacityLimiter(AHEAD)
        self.nursery: trio.Nursery | None = None

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return _attrs(inode, 0 if inode == pyfuse3.ROOT_INODE else self.size, inode == 1)

    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if name != b"big":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(2)

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode, direct_io=self.direct_io)

    def _get(self, blockno: int) -> bytes:
        end = min(self.size, (blockno + 1) * BLOCK) - 1
        rng = f"bytes={blockno * BLOCK}-{end}"
        return self.client.get_object(Bucket=self.bucket, Key=self.key, Range=rng)["Body"].read()

    async def _fetch(self, blockno: int) -> None:
        async with self.limiter:
            self.blocks[blockno] = await trio.to_thread.run_sync(self._get, blockno)
        self.pending.pop(blockno).set()

    async def _block(self, blockno: int) -> bytes:
        assert self.nursery is not None
        last = (self.size + BLOCK - 1) // BLOCK
        for b in range(blockno, min(blockno + AHEAD + 1, last)):
            if b not in self.blocks and b not in self.pending:
                self.pending[b] = trio.Event()
                self.nursery.start_soon(self._fetch, b)
        for old in [b for b in self.blocks if b < blockno - 1]:
            del self.blocks[old]
        if blockno in self.pending:
            await self.pending[blockno].wait()
        return self.blocks[blockno]

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        end = min(off + size, self.size)
        if off >= end:
            return b""
        b = off // BLOCK
        head = memoryview(await self._block(b))[off - b * BLOCK : end - b * BLOCK]
        if end <= (b + 1) * BLOCK:
            return head
        tail = memoryview(await self._block(b + 1))[: end - (b + 1) * BLOCK]
        return bytes(head) + bytes(tail)


class Tree(pyfuse3.Operations):
    """The members of a tar, from memory."""

    def __init__(self, tar_path: str):
        super().__init__()
        self.dirs: dict[int, dict[bytes, int]] = {pyfuse3.ROOT_INODE: {}}
        self.files: dict[int, bytes] = {}
        with tarfile.open(tar_path) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                *parts, name = info.name.split("/")
                parent = pyfuse3.ROOT_INODE
                for part in parts:
                    entries = self.dirs[parent]
                    if part.encode() not in entries:
                        entries[part.encode()] = ino = len(self.dirs) + len(self.files) + 10
                        self.dirs[ino] = {}
                    parent = entries[part.encode()]
                ino = len(self.dirs) + len(self.files) + 10
                self.dirs[parent][name.encode()] = ino
                fileobj = tar.extractfile(info)
                assert fileobj is not None
                self.files[ino] = fileobj.read()

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if inode in self.dirs:
            return _attrs(inode, 0, True)
        return _attrs(inode, len(self.files[inode]), False)

    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        inode = self.dirs.get(parent, {}).get(name)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(inode)

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        entries = sorted(self.dirs[fh].items())
        for n, (name, inode) in enumerate(entries[start_id:], start_id + 1):
            if not pyfuse3.readdir_reply(token, name, await self.getattr(inode), n):
                return

    async def releasedir(self, fh: int) -> None:
        return None

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.files[fh][off : off + size]

    async def release(self, fh: int) -> None:
        return None


async def _serve(ops: pyfuse3.Operations) -> None:
    async with trio.open_nursery() as nursery:
        if isinstance(ops, ReadThrough):
            ops.nursery = nursery
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="kind", required=True)
    rt = sub.add_parser("readthrough")
    for name in ("mountpoint", "endpoint", "bucket", "key"):
        rt.add_argument(name)
    rt.add_argument("size", type=int)
    rt.add_argument("--direct-io", action="store_true")
    tr = sub.add_parser("tree")
    tr.add_argument("mountpoint")
    tr.add_argument("tar")
    args = ap.parse_args()
    ops: pyfuse3.Operations
    if args.kind == "readthrough":
        client = boto3.client(
            "s3", endpoint_url=args.endpoint, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
        )  # fmt: skip
        ops = ReadThrough(client, args.bucket, args.key, args.size, args.direct_io)
    else:
        ops = Tree(args.tar)
    options = set(pyfuse3.default_options) | {"fsname=ceiling", "ro"}
    pyfuse3.init(ops, args.mountpoint, options)
    try:
        trio.run(_serve, ops)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
