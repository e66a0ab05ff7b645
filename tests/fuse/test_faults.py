"""The server dies mid-read, the daemon is killed: errors are bounded, nothing hangs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from artifactfs.devserver import S3Server
from tests.support import CLI, is_mounted, pid_alive, wait_until

pytestmark = pytest.mark.fuse
MIB = 1 << 20


def test_server_killed_mid_read_gives_eio_within_the_deadline_then_recovers(
    s3, bucket, mount, tmp_path
):
    data = os.urandom(16 * MIB)
    (bucket / "f.bin").write_bytes(data)
    m = mount("s3://bkt", "--request-timeout", "4", "--max-attempts", "2", "--read-ahead", "0",
              server=s3)  # fmt: skip
    fd = os.open(m.path / "f.bin", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == data[:4096]  # block 0 is now cached
        port = s3.port
        s3.kill()
        start = time.monotonic()
        with pytest.raises(OSError) as err:
            os.pread(fd, 4096, 9 * MIB)
        elapsed = time.monotonic() - start
        assert err.value.errno == errno.EIO
        assert elapsed < 4 + 2, f"EIO took {elapsed:.1f} s"
        assert pid_alive(m.pid)
        # cached data is still served while the store is down, even to a new open
        time.sleep(1.1)  # past the metadata TTL: the daemon must fall back to what it knew
        with open(m.path / "f.bin", "rb") as f:
            assert f.read(4096) == data[:4096]
        # the server comes back on the same port: reads recover
        s3.port = port
        s3.start()
        assert os.pread(fd, 4096, 9 * MIB) == data[9 * MIB : 9 * MIB + 4096]
    finally:
        os.close(fd)
    assert "serving the last known" in m.log()


def test_sigterm_unmounts_cleanly(s3, bucket, mount):
    (bucket / "x").write_text("x")
    m = mount(server=s3)
    assert (m.path / "x").read_text() == "x"
    os.kill(m.pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_alive(m.pid), timeout=15)
    assert not is_mounted(m.path)
    assert "unmounted" in m.log()


def test_sigkill_leaves_enotconn_and_umount_recovers(s3, bucket, mount):
    (bucket / "x").write_text("x")
    m = mount(server=s3)
    os.kill(m.pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(m.pid), timeout=10)
    with pytest.raises(OSError) as err:
        os.stat(m.path)
    assert err.value.errno == errno.ENOTCONN
    again = subprocess.run([*CLI, "mount", "s3://bkt", str(m.path), "--endpoint-url",
                            s3.endpoint_url, "--cache-dir", str(m.cache_dir)],
                           env=m.env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert again.returncode != 0
    assert "artifactfs umount" in again.stderr
    done = subprocess.run([*CLI, "umount", str(m.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not is_mounted(m.path)
    m.start()  # the cache directory's lock died with the daemon: a new mount works
    assert (m.path / "x").read_text() == "x"


def test_a_missing_server_at_read_time_never_hangs(tmp_path, mount):
    server = S3Server(tmp_path / "s3b", tmp_path / "rclone-b.log")
    (server.bucket_dir("bkt") / "y").write_bytes(os.urandom(MIB))
    with server:
        m = mount("s3://bkt", "--request-timeout", "3", "--max-attempts", "2",
                  server=server, name="mnt-b", cache="cache-b")  # fmt: skip
    # the server is gone before anything was read or listed
    start = time.monotonic()
    with pytest.raises(OSError) as err:
        (m.path / "y").read_bytes()
    assert err.value.errno == errno.EIO
    assert time.monotonic() - start < 8
