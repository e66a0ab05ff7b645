"""`artifactfs demo`: the whole job on an embedded default, on loopback only.

Starts a real S3 server (the one the tests use), seeds it with a
StudioML-style bucket, mounts it with the real CLI (credentials passed in
the environment, never argv), shows a tree and a file, and waits for Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from artifactfs.archive.detect import archive_stem
from artifactfs.devserver import S3Server
from artifactfs.studio_seed import seed_studioml


def _tree(root: Path, limit: int = 60) -> list[str]:
    """Like `tree`: every directory before its children, sizes for files."""
    lines = [f"{root}/"]

    def walk(directory: Path, depth: int) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if len(lines) > limit:
                return
            pad = "    " * depth
            if entry.is_dir():
                lines.append(f"{pad}{entry.name}/")
                walk(Path(entry.path), depth + 1)
            else:
                lines.append(f"{pad}{entry.name}  ({entry.stat().st_size:,} bytes)")

    walk(root, 1)
    return lines


def run_demo(workdir: Path | None, exit_after: float | None) -> int:
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="artifactfs-demo-")) if own_dir else workdir
    assert work is not None
    work.mkdir(parents=True, exist_ok=True)
    mountpoint = work / "mnt"
    mountpoint.mkdir(exist_ok=True)
    server = S3Server(work / "s3", work / "rclone.log", log_requests=False)
    print(f"demo: S3 server (rclone serve s3) on {server.endpoint_url}, data in {work / 's3'}")
    experiment = seed_studioml(server.bucket_dir("studioml-artifacts"),
                               server.bucket_dir("studioml-meta"))  # fmt: skip
    env = dict(os.environ, **server.client_env())
    cli = [sys.executable, "-m", "artifactfs"]
    mounted = False
    try:
        server.start()
        mount = subprocess.run(
            [*cli, "mount", "s3://studioml-artifacts", str(mountpoint),
             "--endpoint-url", server.endpoint_url, "--cache-dir", str(work / "cache"),
             "--log-file", str(work / "artifactfs.log")],
            env=env,
        )  # fmt: skip
        if mount.returncode != 0:
            return mount.returncode
        mounted = True
        print(f"demo: mounted s3://studioml-artifacts at {mountpoint}\n")
        print("\n".join(_tree(mountpoint)))
        key = experiment["artifacts"]["workspace"]["key"]
        workspace = (
            mountpoint / key.rpartition("/")[0] / (archive_stem(key.rpartition("/")[2]) or "")
        )
        print(f"\ndemo: the workspace archive {key} is the directory {workspace.name}/;")
        print(f"demo: cat {workspace / 'train.py'}  (only this member's bytes are fetched)\n")
        print((workspace / "train.py").read_text())
        print(f"demo: log of the daemon: {work / 'artifactfs.log'}")
        _wait(exit_after, mountpoint)
        return 0
    finally:
        if mounted:
            subprocess.run([*cli, "umount", str(mountpoint)])
        server.stop()
        print("demo: unmounted and stopped the S3 server")
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def _wait(exit_after: float | None, mountpoint: Path) -> None:
    if exit_after is not None:
        threading.Event().wait(exit_after)
        return
    print(f"demo: browse {mountpoint} from another shell; Ctrl-C to unmount and stop")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
