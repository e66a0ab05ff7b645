"""Helpers shared by the test layers: real servers, real mounts, real cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from artifactfs.devserver import S3Server

CLI = [sys.executable, "-m", "artifactfs"]


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Mount:
    """One real `artifactfs mount` (background mode, as a user runs it)."""

    def __init__(
        self,
        source: str,
        mountpoint: Path,
        cache_dir: Path,
        server: S3Server | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.source = source
        self.path = mountpoint
        self.cache_dir = cache_dir
        self.log_file = cache_dir.parent / f"{cache_dir.name}.log"
        self.server = server
        self.args = args
        self.env = dict(os.environ if env is None else env)
        if server is not None and env is None:
            self.env.update(server.client_env())
        self.pid: int | None = None

    def command(self) -> list[str]:
        source = [self.source] if self.source else []  # none with --experiment-file
        cmd = [*CLI, "mount", *source, str(self.path), "--cache-dir", str(self.cache_dir),
               "--log-file", str(self.log_file), *self.args]  # fmt: skip
        if self.server is not None and "--endpoint-url" not in self.args:
            cmd += ["--endpoint-url", self.server.endpoint_url]
        return cmd

    def start(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(self.command(), env=self.env, capture_output=True, text=True,
                              timeout=90)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"mount failed ({proc.returncode}): {proc.stderr}\n{self.log()}")
        if proc.returncode == 0:
            self.pid = int((self.cache_dir / "lock").read_text().split()[0])
        return proc

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Unmount (CLI, then fusermount3 -u, then -uz) and make sure the daemon is gone."""
        if is_mounted(self.path):
            subprocess.run([*CLI, "umount", str(self.path)], capture_output=True, timeout=30)
        for flag in ("-u", "-uz"):
            if is_mounted(self.path):
                subprocess.run(["fusermount3", flag, str(self.path)], capture_output=True)
        if self.pid is not None:
            deadline = time.monotonic() + 10
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None

    def __enter__(self) -> Mount:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def assert_no_secret_exposed(m: Mount, secrets: list[str]) -> None:
    """No secret in the daemon's log, its argv, the mount table, or any name, byte or
    extended attribute of the mount."""
    secrets = [s for s in secrets if s]
    assert secrets
    log = m.log()
    with open(f"/proc/{m.pid}/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace")
    with open("/proc/self/mounts") as f:
        mounts = f.read()
    for secret in secrets:
        assert secret not in log, "a secret in the log"
        assert secret not in argv, "a secret in argv"
        assert secret not in mounts, "a secret in the mount table"
    for dirpath, dirnames, filenames in os.walk(m.path):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            assert os.listxattr(path) == []
            data = b""
            if os.path.isfile(path):
                with contextlib.suppress(OSError), open(path, "rb") as f:
                    data = f.read()
            for secret in secrets:
                assert secret not in name and secret.encode() not in data, path


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
