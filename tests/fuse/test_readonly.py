"""Every write-like operation fails with EROFS."""

from __future__ import annotations

import errno
import os

import pytest

from artifactfs.devserver import S3Server
from tests.support import Mount

pytestmark = pytest.mark.fuse


@pytest.fixture(scope="module")
def ro(tmp_path_factory):
    """One server and one mount for the whole module: every case only reads or is refused."""
    tmp = tmp_path_factory.mktemp("ro")
    with S3Server(tmp / "s3", tmp / "rclone.log") as server:
        (server.bucket_dir("bkt") / "d").mkdir()
        (server.bucket_dir("bkt") / "d" / "f.txt").write_text("data")
        with Mount("s3://bkt", tmp / "mnt", tmp / "cache", server) as m:
            yield m.path


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda p: os.open(p / "d" / "f.txt", os.O_WRONLY), id="open-write"),
        pytest.param(lambda p: os.open(p / "d" / "f.txt", os.O_RDWR), id="open-rdwr"),
        pytest.param(lambda p: os.open(p / "d" / "new", os.O_CREAT | os.O_WRONLY), id="create"),
        pytest.param(lambda p: os.truncate(p / "d" / "f.txt", 0), id="truncate"),
        pytest.param(lambda p: os.mkdir(p / "d" / "sub"), id="mkdir"),
        pytest.param(lambda p: os.unlink(p / "d" / "f.txt"), id="unlink"),
        pytest.param(lambda p: os.rmdir(p / "d"), id="rmdir"),
        pytest.param(lambda p: os.rename(p / "d" / "f.txt", p / "d" / "g"), id="rename"),
        pytest.param(lambda p: os.chmod(p / "d" / "f.txt", 0o777), id="chmod"),
        pytest.param(lambda p: os.utime(p / "d" / "f.txt", (1, 1)), id="utime"),
        pytest.param(lambda p: os.symlink("x", p / "d" / "link"), id="symlink"),
        pytest.param(lambda p: os.link(p / "d" / "f.txt", p / "d" / "hard"), id="link"),
        pytest.param(lambda p: os.setxattr(p / "d" / "f.txt", "user.k", b"v"), id="setxattr"),
        pytest.param(lambda p: os.removexattr(p / "d" / "f.txt", "user.k"), id="removexattr"),
    ],
)
def test_write_like_operations_fail_with_erofs(ro, op):
    with pytest.raises(OSError) as err:
        op(ro)
    assert err.value.errno == errno.EROFS
    assert (ro / "d" / "f.txt").read_text() == "data"


def test_reads_and_xattr_queries_still_work(ro):
    assert os.listxattr(ro / "d" / "f.txt") == []
    with pytest.raises(OSError) as err:
        os.getxattr(ro / "d" / "f.txt", "user.k")
    assert err.value.errno == errno.ENODATA
    assert os.access(ro / "d" / "f.txt", os.R_OK)
    assert not os.access(ro / "d" / "f.txt", os.W_OK)
