"""The pyfuse3 adapter: kernel requests in, FileSystemModel calls, errno out.

Nothing here decides anything about the filesystem. Every handler goes
through `_errors`, the single place that logs a failure and turns it into
the errno the reader sees (via `errors.errno_for`).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from artifactfs.errors import ArtifactFSError, NotFound, ReadOnly, errno_for
from artifactfs.vfs import Attributes, FileSystemModel

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_QUIET = (NotFound, ReadOnly)  # expected in normal use: no log line
_LOG_INTERVAL = 10.0
_last_logged: dict[str, float] = {}


def _log_failure(op: str, exc: BaseException) -> None:
    """One line per distinct failure, at most every few seconds each."""
    if isinstance(exc, _QUIET):
        return
    if isinstance(exc, ArtifactFSError):
        line = f"{op}: {exc}"
    else:
        line = f"{op}: internal error {type(exc).__name__}: {exc}"
    now = time.monotonic()
    if now - _last_logged.get(line, -_LOG_INTERVAL) < _LOG_INTERVAL:
        return
    _last_logged[line] = now
    if len(_last_logged) > 1024:
        _last_logged.clear()
    if isinstance(exc, ArtifactFSError):
        log.warning("%s", line)
    else:
        log.error("%s", line, exc_info=log.isEnabledFor(logging.DEBUG))


def _errors(fn: Callable[P, Awaitable[R]], op: str | None = None) -> Callable[P, Awaitable[R]]:
    """Count and time the operation; log a failure once and answer its errno."""
    name = op or fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        metrics = args[0].metrics  # type: ignore[attr-defined]
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError as exc:
            metrics.count_fuse_error(name, exc.errno)
            raise
        except Exception as exc:
            _log_failure(name, exc)
            code = errno_for(exc)
            metrics.count_fuse_error(name, code)
            raise pyfuse3.FUSEError(code) from None
        finally:
            metrics.observe_fuse(name, time.perf_counter() - start)

    return wrapper


def _entry(attrs: Attributes) -> pyfuse3.EntryAttributes:
    e = pyfuse3.EntryAttributes()
    e.st_ino = attrs.ino
    e.generation = 0
    e.entry_timeout = attrs.timeout
    e.attr_timeout = attrs.timeout
    e.st_mode = attrs.mode
    e.st_nlink = attrs.nlink
    e.st_uid = attrs.uid
    e.st_gid = attrs.gid
    e.st_rdev = 0
    e.st_size = attrs.size
    e.st_blksize = attrs.blksize
    e.st_blocks = (attrs.size + 511) // 512
    e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = attrs.mtime_ns
    return e


async def _read_only(*_: Any, **__: Any) -> Any:
    raise ReadOnly("read-only filesystem")


class ArtifactOperations(pyfuse3.Operations):
    """pyfuse3 callbacks; each one line into the model."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, model: FileSystemModel):
        super().__init__()
        self.model = model
        self.metrics = model.fetcher.metrics

    @_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        return _entry(await self.model.lookup(parent_inode, os.fsdecode(name)))

    async def forget(self, inode_list: Any) -> None:
        for ino, nlookup in inode_list:
            self.model.forget(ino, nlookup)

    @_errors
    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return _entry(await self.model.getattr(inode))

    @_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return os.fsencode(self.model.readlink(inode))

    @_errors
    async def opendir(self, inode: int, ctx: Any) -> int:
        return await self.model.opendir(inode)

    @_errors
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        for next_id, name, attrs in self.model.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(name), _entry(attrs), next_id):
                return
            self.model.remember(attrs.ino)

    async def releasedir(self, fh: int) -> None:
        self.model.releasedir(fh)

    @_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        writable = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND) != 0
        fh, keep_cache = await self.model.open(inode, writable)
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache)

    @_errors
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        return await self.model.read(fh, off, size)

    async def release(self, fh: int) -> None:
        self.model.release(fh)

    @_errors
    async def statfs(self, ctx: Any) -> Any:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = self.model.known_inodes
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    @_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        self.model.node(inode)
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @_errors
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        self.model.node(inode)
        return []

    @_errors
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        self.model.node(inode)
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    # flush, fsync and fsyncdir are left to pyfuse3's default (ENOSYS). The kernel
    # then stops sending them and treats close() and fsync() as successful, which
    # saves one round trip into the daemon on every close: nothing is ever dirty.


# Every write-like operation: EROFS (the mount is also `ro` for the kernel).
for _op in ("setattr", "mknod", "mkdir", "unlink", "rmdir", "symlink", "rename", "link",
            "write", "create", "setxattr", "removexattr"):  # fmt: skip
    setattr(ArtifactOperations, _op, _errors(_read_only, _op))
