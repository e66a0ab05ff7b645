"""`artifactfs prefetch MOUNTPOINT PATH...`: warm the block cache before a job starts.

It reads every file under the paths through the mount, so exactly what an
experiment will read is fetched into the cache, through the same code and
the same checks. Several files are read at once (the store is far away; the
daemon's read-ahead makes each file's read sequential and parallel); pages
are dropped from the kernel's page cache as they are read, so warming a
large dataset does not push the node's memory out.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from artifactfs.report import human_size

CHUNK = 8 << 20


@dataclass(slots=True)
class Progress:
    total_files: int = 0
    total_bytes: int = 0
    files: int = 0
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _walk(path: Path) -> Iterator[tuple[Path, int]]:
    """Regular files under `path` (symlinks not followed: they may leave the mount).
    One lstat per file: each is a round trip into the daemon."""
    st = path.lstat()
    if stat.S_ISREG(st.st_mode):
        yield path, st.st_size
    if not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p, st.st_size


def _read(path: Path, progress: Progress) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        with progress.lock:
            progress.failed.append((str(path), exc.strerror or str(exc)))
        return
    try:
        offset = 0
        while chunk := os.pread(fd, CHUNK, offset):
            os.posix_fadvise(fd, offset, len(chunk), os.POSIX_FADV_DONTNEED)
            offset += len(chunk)
            with progress.lock:
                progress.bytes += len(chunk)
        with progress.lock:
            progress.files += 1
    except OSError as exc:
        with progress.lock:
            progress.failed.append((str(path), exc.strerror or str(exc)))
    finally:
        os.close(fd)


def _bar(p: Progress, started: float) -> str:
    frac = p.bytes / p.total_bytes if p.total_bytes else 1.0
    width = 30
    filled = int(width * min(frac, 1.0))
    rate = p.bytes / max(time.monotonic() - started, 1e-6)
    return (f"\r[{'#' * filled}{' ' * (width - filled)}] {100 * frac:5.1f}% "
            f"{human_size(p.bytes)}/{human_size(p.total_bytes)} {human_size(rate)}/s "
            f"{p.files}/{p.total_files} files")  # fmt: skip


def prefetch(mountpoint: Path, paths: list[str], jobs: int = 4, show: bool | None = None) -> int:
    """Read everything under `paths` (relative to the mount or absolute in it).

    Prints figures at the end; returns 0, or 1 if any file failed."""
    mount = Path(os.path.abspath(mountpoint))
    targets = []
    for text in paths:
        p = Path(text)
        p = Path(os.path.abspath(p if p.is_absolute() else mount / p))
        if p != mount and mount not in p.parents:
            print(f"artifactfs: {text} is not inside {mount}", file=sys.stderr)
            return 2
        targets.append(p)
    progress = Progress()
    files: list[Path] = []
    for target in targets:
        try:
            for path, size in _walk(target):
                files.append(path)
                progress.total_bytes += size
        except OSError as exc:
            progress.failed.append((str(target), exc.strerror or str(exc)))
    progress.total_files = len(files)
    show = sys.stderr.isatty() if show is None else show
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_read, f, progress) for f in files]
        while show and not all(f.done() for f in futures):
            print(_bar(progress, started), end="", file=sys.stderr, flush=True)
            time.sleep(0.2)
    elapsed = time.monotonic() - started
    if show:
        print(_bar(progress, started), file=sys.stderr)
    for path, why in progress.failed:
        print(f"artifactfs: {path}: {why}", file=sys.stderr)
    rate = progress.bytes / max(elapsed, 1e-6)
    print(f"prefetched {progress.files} files, {human_size(progress.bytes)} in {elapsed:.1f} s "
          f"({human_size(rate)}/s); {len(progress.failed)} failed")  # fmt: skip
    return 1 if progress.failed else 0
