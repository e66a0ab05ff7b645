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


@pytest.mark.parametrize(
    ("code", "status", "kind", "words"),
    [
        ("ExpiredToken", 400, errors.AccessDenied, "the credentials have expired (ExpiredToken)"),
        ("InvalidToken", 400, errors.AccessDenied, "access denied by the server (InvalidToken)"),
        ("InvalidAccessKeyId", 403, errors.AccessDenied, "access denied"),
        ("403", 403, errors.AccessDenied, "access denied"),
        ("NoSuchBucket", 404, errors.BucketNotFound, "bucket does not exist"),
        ("NoSuchKey", 404, errors.NotFound, "no such object"),
        ("PreconditionFailed", 412, errors.StaleObject, "changed"),
        ("SlowDown", 503, errors.StoreUnavailable, "server error SlowDown"),
    ],
)
def test_s3_errors_name_their_cause(code, status, kind, words):
    """What the server said becomes an error (and errno) a user can act on."""
    from botocore.exceptions import ClientError

    from artifactfs.store.s3 import classify

    exc = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                      "GetObject")  # fmt: skip
    err = classify(exc, "s3://b/k")
    assert type(err) is kind
    assert str(err).startswith("s3://b/k: ") and words in str(err)
