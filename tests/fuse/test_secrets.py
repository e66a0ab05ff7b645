"""A secret placed in the daemon's environment shows up nowhere a user or log reader looks."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

pytestmark = pytest.mark.fuse


def test_secret_never_in_debug_log_argv_mount_or_errors(s3, bucket, mount):
    secret = s3.secret_key
    (bucket / "d").mkdir()
    (bucket / "d" / "f.txt").write_text("payload")
    m = mount("s3://bkt", "--debug", server=s3)
    # exercise success and failure paths
    assert (m.path / "d" / "f.txt").read_text() == "payload"
    assert not (m.path / "d" / "missing").exists()
    subprocess.run(["ls", "-laR", str(m.path)], capture_output=True, check=True)
    with pytest.raises(OSError):
        (m.path / "d" / "w").write_text("x")

    assert stat.S_IMODE(os.stat(m.cache_dir).st_mode) == 0o700  # no other user reads the cache
    log = m.log()
    assert "DEBUG" in log  # debug logging really was on
    assert secret not in log

    with open(f"/proc/{m.pid}/cmdline", "rb") as f:
        assert secret.encode() not in f.read()
    with open("/proc/self/mounts") as f:
        assert secret not in f.read()

    for dirpath, dirnames, filenames in os.walk(m.path):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            assert secret not in name
            assert os.listxattr(path) == []
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    assert secret.encode() not in f.read()


def test_a_process_started_beside_the_mount_does_not_inherit_secrets(s3, bucket, mount):
    """What an experiment runs: a shell that reads the mount, with the runner's clean env."""
    (bucket / "f").write_text("x")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    m = mount(server=s3)
    out = subprocess.run(["sh", "-c", f"cat {m.path}/f; env"], env=clean_env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.startswith("x")
    assert s3.secret_key not in out and s3.access_key not in out
