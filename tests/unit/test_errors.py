import errno

import pytest

from artifactfs import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("x"), errno.ENOENT),
        (errors.ReadOnly("x"), errno.EROFS),
        (errors.StaleObject("x"), errno.ESTALE),
        (errors.StoreUnavailable("x"), errno.EIO),
        (errors.AccessDenied("x"), errno.EACCES),
        (errors.NotADirectory("x"), errno.ENOTDIR),
        (errors.IsADirectory("x"), errno.EISDIR),
        (OSError(errno.ENOSPC, "full"), errno.ENOSPC),
        (RuntimeError("bug"), errno.EIO),
        (KeyError("bug"), errno.EIO),
    ],
)
def test_errno_table(exc, code):
    assert errors.errno_for(exc) == code
