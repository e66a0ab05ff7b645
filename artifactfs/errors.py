"""Domain exceptions and the one table that maps them to errno.

Every layer below the FUSE adapter raises these (or lets an unexpected
exception escape); `errno_for` is the only place that decides what a reader
sees, so the mapping is reviewed and tested in one spot.
"""

from __future__ import annotations

import errno


class ArtifactFSError(Exception):
    """Base of every error artifactfs raises on purpose."""

    errno: int = errno.EIO


class NotFound(ArtifactFSError):
    errno = errno.ENOENT


class NotADirectory(ArtifactFSError):
    errno = errno.ENOTDIR


class IsADirectory(ArtifactFSError):
    errno = errno.EISDIR


class ReadOnly(ArtifactFSError):
    """A write-like operation on a read-only mount."""

    errno = errno.EROFS


class StaleObject(ArtifactFSError):
    """The object changed under an open handle: never serve a mix of versions."""

    errno = errno.ESTALE


class StoreUnavailable(ArtifactFSError):
    """The object store could not be reached or did not answer in time."""

    errno = errno.EIO


class AccessDenied(ArtifactFSError):
    """The store refused the request (bad, missing or expired credentials)."""

    errno = errno.EACCES


class BucketNotFound(ArtifactFSError):
    errno = errno.ENOENT


class InvalidArgument(ArtifactFSError):
    errno = errno.EINVAL


class NotASymlink(ArtifactFSError):
    errno = errno.EINVAL


class NoSuchAttribute(ArtifactFSError):
    errno = errno.ENODATA


class BadHandle(ArtifactFSError):
    errno = errno.EBADF


class CacheInUse(ArtifactFSError):
    """Another daemon holds the cache directory's lock."""


class ConfigError(ArtifactFSError):
    """The command line or configuration cannot be used as given."""

    errno = errno.EINVAL


def errno_for(exc: BaseException) -> int:
    """The errno a reader gets for `exc`; anything unexpected is EIO."""
    if isinstance(exc, ArtifactFSError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO
