"""Objects replaced in the bucket: new opens see the new version, old handles get ESTALE."""

from __future__ import annotations

import errno
import os
import time

import pytest

pytestmark = pytest.mark.fuse
MIB = 1 << 20


def _replace(path, data):
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    t = time.time() + 2
    os.utime(path, (t, t))


def test_overwritten_object_old_handle_stale_new_open_fresh(s3, bucket, mount):
    old = b"A" * (24 * MIB)
    new = b"B" * (24 * MIB)  # same size: only the etag tells the versions apart
    (bucket / "v.bin").write_bytes(old)
    m = mount("s3://bkt", "--metadata-ttl", "0", "--read-ahead", "0", server=s3)
    fd = os.open(m.path / "v.bin", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == old[:4096]
        _replace(bucket / "v.bin", new)
        with pytest.raises(OSError) as err:
            os.pread(fd, 4096, 20 * MIB)  # a block not cached yet: must not come from `new`
        assert err.value.errno == errno.ESTALE
    finally:
        os.close(fd)
    assert (m.path / "v.bin").read_bytes() == new
    assert "was replaced since it was opened" in m.log()


def test_replaced_with_a_different_size(s3, bucket, mount):
    (bucket / "grow.txt").write_bytes(b"short")
    m = mount("s3://bkt", "--metadata-ttl", "0", server=s3)
    assert (m.path / "grow.txt").read_bytes() == b"short"
    _replace(bucket / "grow.txt", b"much longer content now")
    assert (m.path / "grow.txt").read_bytes() == b"much longer content now"
    assert os.stat(m.path / "grow.txt").st_size == len(b"much longer content now")


def test_new_and_deleted_objects_show_after_the_metadata_ttl(s3, bucket, mount):
    (bucket / "d").mkdir()
    (bucket / "d" / "one").write_text("1")
    m = mount("s3://bkt", "--metadata-ttl", "0.5", "--negative-ttl", "0.5", server=s3)
    assert os.listdir(m.path / "d") == ["one"]
    assert not (m.path / "d" / "two").exists()
    (bucket / "d" / "two").write_text("2")
    (bucket / "d" / "one").unlink()
    time.sleep(1.2)
    assert os.listdir(m.path / "d") == ["two"]
    assert (m.path / "d" / "two").read_text() == "2"
