"""The CLI as a user runs it: one clear line on failure, within 15 s, no secret, no traceback."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from artifactfs.devserver import free_port
from tests.support import CLI, is_mounted

pytestmark = pytest.mark.fuse


def _mount(args, env, tmp_path):
    (tmp_path / "mnt").mkdir(exist_ok=True)
    start = time.monotonic()
    proc = subprocess.run([*CLI, "mount", *args, str(tmp_path / "mnt"),
                           "--cache-dir", str(tmp_path / "cache")],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    return proc, time.monotonic() - start


def _assert_one_clear_line(proc, elapsed, tmp_path, *needles, secret=None):
    assert proc.returncode != 0
    assert elapsed < 15, f"took {elapsed:.1f} s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    if secret:
        assert secret not in proc.stderr + proc.stdout
    assert not is_mounted(tmp_path / "mnt")


def test_wrong_endpoint(s3, tmp_path):
    env = dict(os.environ, **s3.client_env())
    proc, t = _mount(["s3://bkt", "--endpoint-url", f"http://127.0.0.1:{free_port()}"],
                     env, tmp_path)  # fmt: skip
    _assert_one_clear_line(proc, t, tmp_path, "cannot connect", secret=s3.secret_key)


def test_bad_credentials(s3, tmp_path):
    env = dict(os.environ, **s3.client_env())
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-right-secret-0123456789"
    proc, t = _mount(["s3://bkt", "--endpoint-url", s3.endpoint_url], env, tmp_path)
    _assert_one_clear_line(proc, t, tmp_path, "access denied", secret="not-the-right-secret")


def test_missing_bucket(s3, tmp_path):
    env = dict(os.environ, **s3.client_env())
    proc, t = _mount(["s3://no-such-bucket", "--endpoint-url", s3.endpoint_url], env, tmp_path)
    _assert_one_clear_line(proc, t, tmp_path, "bucket does not exist", secret=s3.secret_key)


def test_no_credentials_anywhere(s3, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    nothing = str(tmp_path / "none")
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=nothing, AWS_SHARED_CREDENTIALS_FILE=nothing)  # fmt: skip
    proc, t = _mount(["s3://bkt", "--endpoint-url", s3.endpoint_url], env, tmp_path)
    _assert_one_clear_line(proc, t, tmp_path, "no credentials found")


def test_missing_mountpoint(s3, tmp_path):
    env = dict(os.environ, **s3.client_env())
    proc = subprocess.run([*CLI, "mount", "s3://bkt", str(tmp_path / "nope"), "--endpoint-url",
                           s3.endpoint_url], env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_option_values_are_refused_before_anything_starts(tmp_path):
    (tmp_path / "mnt").mkdir()
    for args in (["s3://bkt", "--cache-size", "lots"], ["ftp://bkt"],
                 ["s3://bkt", "--endpoint-url", "http://key:secret@127.0.0.1:9"]):  # fmt: skip
        proc = subprocess.run([*CLI, "mount", *args, str(tmp_path / "mnt")],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr
        assert "secret" not in proc.stderr.replace("credentials", "")


def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run([*CLI, "demo", "--dir", str(tmp_path / "demo"), "--exit-after", "0"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "blobstore/" in out and "experiments/" in out
    assert "modeldir/" in out and "checkpoint.bin" in out and "train.py" in out
    assert "def main():" in out  # the file printed from the workspace archive
    assert not is_mounted(tmp_path / "demo" / "mnt")
