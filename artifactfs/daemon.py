"""The daemon's life: check, mount, serve, unmount.

Order matters for users: everything that can fail for a reason a human can
fix (mount point, cache directory, endpoint, credentials, bucket) is checked
before the kernel mount, so `artifactfs mount` fails with one line and
leaves nothing mounted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from artifactfs import __version__, control
from artifactfs.archives import ArchiveService
from artifactfs.cache.blocks import BlockCache, lock_cache_dir
from artifactfs.credentials import session_for
from artifactfs.errors import ArtifactFSError, ConfigError, NotFound
from artifactfs.experiment import ExperimentNamespace
from artifactfs.exporter import MountCollector
from artifactfs.exporter import serve as serve_metrics
from artifactfs.fetch import BlockFetcher
from artifactfs.fs import ArtifactOperations
from artifactfs.kernel import tune_mount
from artifactfs.memory import tame_malloc
from artifactfs.metrics import Metrics, figures
from artifactfs.namespace import BucketNamespace, Namespace
from artifactfs.notify import ReadyPipe, sd_notify
from artifactfs.options import MountOptions
from artifactfs.probe import clear_dead_mount, is_dead_mount
from artifactfs.store.base import ObjectStore
from artifactfs.store.http import HttpStore
from artifactfs.store.local import LocalStore
from artifactfs.store.router import BucketRouter
from artifactfs.store.s3 import S3Settings, S3Store
from artifactfs.studio import (
    Experiment,
    StoreConfig,
    StudioConfig,
    load_config,
    load_experiment_file,
    parse_experiment,
)
from artifactfs.vfs import FileSystemModel, ModelOptions

log = logging.getLogger(__name__)


def check_mountpoint(path: Path, recover: bool = False) -> None:
    if is_dead_mount(path):
        if not recover:
            raise ConfigError(
                f"mount point {path} is a dead mount (its daemon died); "
                f"run `artifactfs umount {path}` first, or mount with --recover"
            )
        log.warning("mount point %s is a dead mount (its daemon died); detaching it", path)
        clear_dead_mount(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"mount point {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"mount point {path}: {exc.strerror}") from None
    if not os.path.isdir(path) or not (st.st_mode & 0o040000):
        raise ConfigError(f"mount point {path} is not a directory")
    if os.path.ismount(path):
        raise ConfigError(f"{path} is already a mount point")


def build_store(
    opts: MountOptions,
    bucket: str | None = None,
    store_config: StoreConfig | None = None,
    endpoint_url: str | None = None,
    metrics: Metrics | None = None,
) -> ObjectStore:
    if opts.source.scheme == "file":
        return LocalStore(opts.source.bucket, max_concurrency=opts.max_concurrency)
    settings = S3Settings(
        bucket=bucket or opts.source.bucket,
        endpoint_url=endpoint_url or opts.endpoint_url,
        region=opts.region or (store_config.region if store_config else None),
        path_style=opts.path_style,
        max_concurrency=opts.max_concurrency,
        request_timeout=opts.request_timeout,
        max_attempts=opts.max_attempts,
        allow_anonymous=opts.allow_anonymous,
        # A stalled transfer is abandoned after a third of the deadline without a
        # byte, leaving time to retry it within the deadline.
        read_timeout=max(1.0, min(10.0, opts.request_timeout / 3)),
        connect_timeout=max(1.0, min(5.0, opts.request_timeout / 3)),
    )
    return S3Store(settings, session_for(store_config), metrics)


def fuse_options(opts: MountOptions) -> set[str]:
    fsname = str(opts.source).replace(",", "_")
    options = {f"fsname={fsname}", "subtype=artifactfs", "ro", "default_permissions", "noatime"}
    if opts.allow_other:
        options.add("allow_other")
    return options


def run(opts: MountOptions, ready: ReadyPipe) -> int:
    """Mount and serve until unmounted or signalled. Returns the exit status."""
    tame_malloc()  # before any thread allocates
    try:
        return trio.run(_serve, opts, ready)
    except ArtifactFSError as exc:
        ready.failed(str(exc))
        log.error("cannot mount %s: %s", opts.mountpoint, exc)
        return 1
    except Exception as exc:  # a bug or an environment we did not foresee: still one line
        ready.failed(f"{type(exc).__name__}: {exc}")
        log.error(
            "cannot mount %s: %s: %s",
            opts.mountpoint,
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return 1


async def _serve(opts: MountOptions, ready: ReadyPipe) -> int:
    opts.validate()
    if opts.fuse_fd is None:  # else mounted already, and a stat would wait for us
        check_mountpoint(opts.mountpoint, opts.recover)
    cache_dir = opts.resolved_cache_dir
    lock_fd = lock_cache_dir(cache_dir)
    config = load_config(opts.config_file) if opts.config_file else None
    storage = config.storage if config else None
    metrics = Metrics()
    store = build_store(opts, store_config=storage, metrics=metrics)
    try:
        await store.check()
        disk = BlockCache(cache_dir, opts.cache_size)
        await trio.to_thread.run_sync(disk.load_index)
        namespace: Namespace
        experiment = None
        if opts.experiment_key is not None:
            assert config is not None
            experiment = await _fetch_experiment(opts, config)
        elif opts.experiment_file is not None:
            experiment = load_experiment_file(opts.experiment_file, opts.source.bucket)
        if experiment is not None:
            router = BucketRouter(
                store, lambda b: build_store(opts, b, store_config=storage, metrics=metrics)
            )
            for spec in experiment.artifacts:
                if spec.url is not None:
                    router.add(spec.route, HttpStore(spec.url, spec.route, opts.request_timeout,
                                                     opts.max_attempts))  # fmt: skip
                elif spec.route != spec.bucket:  # its own endpoint and/or credentials
                    router.add(spec.route, build_store(
                        opts, spec.bucket, store_config=spec.credentials or storage,
                        endpoint_url=spec.endpoint, metrics=metrics,
                    ))  # fmt: skip
            store = router
        archives = ArchiveService(store, cache_dir, metrics, disk, opts.block_size,
                                  opts.max_decoded_size, opts.publish_index)  # fmt: skip
        if experiment is not None:
            assert isinstance(store, BucketRouter)
            namespace = ExperimentNamespace(experiment, store, metrics, archives,
                                            opts.metadata_ttl)  # fmt: skip
            log.info("experiment %s: %d artifacts", experiment.key or "?",
                     len(experiment.artifacts))  # fmt: skip
        else:
            namespace = BucketNamespace(
                store, metrics, opts.metadata_ttl, opts.negative_ttl,
                archives=archives, archive_mode=opts.archives,
            )  # fmt: skip
        fetcher = BlockFetcher(
            store, disk, metrics, opts.block_size, opts.memory_budget,
            max_prefetch=max(1, min(8, opts.read_ahead // opts.block_size)),
            write_budget=min(64 << 20, opts.memory_budget // 2),
        )  # fmt: skip
        fetcher.decoded_source = archives.decoded_block
        model = FileSystemModel(
            namespace,
            fetcher,
            opts.source.prefix,
            ModelOptions(
                uid=opts.uid if opts.uid >= 0 else os.getuid(),
                gid=opts.gid if opts.gid >= 0 else os.getgid(),
                metadata_ttl=opts.metadata_ttl,
                read_ahead_bytes=opts.read_ahead,
                kernel_read_ahead=opts.kernel_read_ahead if os.geteuid() == 0 else 0,
            ),
            archives,
        )
        about = {
            "mountpoint": str(opts.mountpoint),
            "source": str(opts.source),
            "pid": os.getpid(),
            "version": __version__,
            "cache_dir": str(cache_dir),
        }

        def current() -> dict[str, Any]:
            return figures(metrics, disk, **about)

        # /dev/fd/N: libfuse serves a descriptor mounted by someone else (kernel-mount)
        target = str(opts.mountpoint) if opts.fuse_fd is None else f"/dev/fd/{opts.fuse_fd}"
        with _metrics_endpoint(opts, metrics, disk, about):  # before mounting: it may fail
            pyfuse3.init(ArtifactOperations(model), target, fuse_options(opts))
            log.info(
                "mounted %s (%s) at %s, cache %s (%d blocks, %d bytes of %d)",
                opts.source, store.describe(), opts.mountpoint, cache_dir,
                disk.stats().blocks, disk.stats().bytes, disk.limit,
            )  # fmt: skip
            try:
                async with trio.open_nursery() as nursery:
                    fetcher.attach(nursery)
                    nursery.start_soon(_stop_on_signals)
                    nursery.start_soon(_dump_on_sigusr1, current)
                    nursery.start_soon(_serve_control, opts.mountpoint, current)
                    nursery.start_soon(_announce_ready, opts, ready)
                    await pyfuse3.main()
                    with trio.move_on_after(30):
                        await fetcher.drain()  # blocks read but not yet on disk
                    nursery.cancel_scope.cancel()
            finally:
                sd_notify("STOPPING=1")
                pyfuse3.close(unmount=opts.fuse_fd is None)  # else ExecStopPost unmounts
                counters = " ".join(f"{k}={v}" for k, v in metrics.snapshot().items())
                log.info("unmounted %s; %s", opts.mountpoint, counters)
        return 0
    finally:
        await store.aclose()
        os.close(lock_fd)


@contextlib.contextmanager
def _metrics_endpoint(
    opts: MountOptions, metrics: Metrics, disk: BlockCache, about: dict[str, Any]
) -> Iterator[None]:
    """The Prometheus endpoint for the mount's life, if --metrics-address asks for one."""
    if not opts.metrics_address:
        yield
        return
    info = {k: str(about[k]) for k in ("mountpoint", "source", "version")}
    try:
        server = serve_metrics(opts.metrics_address, MountCollector(metrics, disk, info))
    except OSError as exc:
        raise ConfigError(f"--metrics-address {opts.metrics_address}: {exc.strerror}") from None
    try:
        yield
    finally:
        server.shutdown()


async def _fetch_experiment(opts: MountOptions, config: StudioConfig) -> Experiment:
    """The experiment JSON at experiments/KEY in the database bucket."""
    db = config.database
    store = build_store(opts, db.bucket, store_config=db, endpoint_url=db.endpoint)
    key = f"experiments/{opts.experiment_key}"
    try:
        raw = await store.get_object(key, 64 << 20)
    except NotFound:
        raise ConfigError(f"experiment {opts.experiment_key} not found "
                          f"(no s3://{db.bucket}/{key})") from None  # fmt: skip
    finally:
        await store.aclose()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError(f"s3://{db.bucket}/{key} is not JSON") from None
    return parse_experiment(doc, config.storage.bucket or None)


async def _stop_on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received %s; unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


async def _dump_on_sigusr1(current: Callable[[], dict[str, Any]]) -> None:
    """SIGUSR1: every thread's stack, trio's tasks and the figures, in the log."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            frames = sys._current_frames()
            for thread in threading.enumerate():
                frame = frames.get(thread.ident or -1)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame)).rstrip()
                    log.info("SIGUSR1: thread %s:\n%s", thread.name, stack)
            log.info(
                "SIGUSR1: trio tasks: %s", ", ".join(_task_names(trio.lowlevel.current_root_task()))
            )
            log.info("SIGUSR1: figures %s", json.dumps(current(), separators=(",", ":")))


def _task_names(task: trio.lowlevel.Task | None) -> list[str]:
    if task is None:
        return []
    names = [task.name]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            names += _task_names(child)
    return names


async def _serve_control(mountpoint: Path, current: Callable[[], dict[str, Any]]) -> None:
    """`artifactfs stat` support; a mount without it still works (one warning)."""
    try:
        await control.serve(mountpoint, current)
    except OSError as exc:
        log.warning("no control socket (artifactfs stat will not see this mount): %s", exc)


async def _announce_ready(opts: MountOptions, ready: ReadyPipe) -> None:
    """Ready means the kernel routes a stat of the mount point to us and we answer."""
    st = await trio.to_thread.run_sync(os.stat, opts.mountpoint)
    if st.st_ino != pyfuse3.ROOT_INODE:
        log.warning("mount point %s answered with inode %d", opts.mountpoint, st.st_ino)
    await trio.to_thread.run_sync(
        tune_mount, opts.mountpoint, st.st_dev, opts.kernel_read_ahead // 1024, opts.max_background
    )
    ready.ready()
