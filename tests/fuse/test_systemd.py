"""The systemd unit, checked by systemd-analyze and run step by step as systemd would.

There is no systemd as PID 1 here, so the test plays the service manager
for the three command lines of `systemd/artifactfs@.service`, read from the
unit itself: it owns the notify socket (receiving the FUSE descriptor the
privileged step stores, as FDSTORE=1 would), passes that descriptor to the
daemon the sd_listen_fds(3) way, and waits for READY=1 and STOPPING=1.
"""

from __future__ import annotations

import array
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import is_mounted

pytestmark = pytest.mark.fuse

UNIT = Path(__file__).parents[2] / "systemd" / "artifactfs@.service"
BINARY = str(Path(sys.executable).parent / "artifactfs")


# What systemd does between fork and exec of ExecStart: the stored descriptor
# becomes fd 3, announced by LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds(3)).
AS_SYSTEMD_PASSES_FDS = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="fuse")
os.execv(sys.argv[2], sys.argv[2:])
"""


def unit_commands(conf: Path, cache: Path) -> dict[str, list[str]]:
    """ExecStartPre/ExecStart/ExecStopPost of the unit, as systemd would run them here."""
    commands = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ExecStartPre", "ExecStart", "ExecStopPost"):
            value = value.lstrip("+-")
            value = value.replace("/etc/artifactfs/%i.conf", str(conf))
            value = value.replace("/var/cache/artifactfs/%i", str(cache))
            value = value.replace("/usr/local/bin/artifactfs", BINARY)
            assert "%" not in value and "$" not in value, f"unexpanded in {key}: {value}"
            commands[key] = value.split()
    return commands


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "artifactfs@verify.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/artifactfs", BINARY))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # not even a warning (unknown keys warn)


class NotifySocket:
    """The service manager's end of $NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(20)

    def receive(self) -> tuple[dict[str, str], list[int]]:
        size = socket.CMSG_SPACE(16 * array.array("i").itemsize)
        data, ancillary, _, _ = self.sock.recvmsg(4096, size)
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return fields, list(fds)

    def wait_for(self, key: str) -> dict[str, str]:
        while True:
            fields, fds = self.receive()
            for fd in fds:
                os.close(fd)
            if key in fields:
                return fields

    def close(self) -> None:
        self.sock.close()


def test_unit_mounts_serves_and_stops_as_systemd_runs_it(s3, bucket, tmp_path):
    (bucket / "models").mkdir()
    (bucket / "models" / "w.bin").write_bytes(b"w" * 100_000)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    conf = tmp_path / "artifacts.conf"
    conf.write_text(f"source = s3://bkt\nmountpoint = {mountpoint}\n"
                    f"endpoint-url = {s3.endpoint_url}\nallow-other = true\n")  # fmt: skip
    creds = tmp_path / "credentials"  # what LoadCredential=aws:... puts in place
    creds.mkdir(mode=0o700)
    (creds / "aws").write_text(f"[default]\naws_access_key_id = {s3.access_key}\n"
                               f"aws_secret_access_key = {s3.secret_key}\n")  # fmt: skip
    commands = unit_commands(conf, tmp_path / "cache")
    manager = NotifySocket(tmp_path / "notify")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(NOTIFY_SOCKET=str(manager.path), CREDENTIALS_DIRECTORY=str(creds),
               HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    daemon = None
    try:
        # ExecStartPre=+: mount in the host's namespace, hand the descriptor over
        pre = subprocess.run(commands["ExecStartPre"], env=env, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert pre.returncode == 0, pre.stderr
        removed, _ = manager.receive()
        assert removed == {"FDSTOREREMOVE": "1", "FDNAME": "fuse"}
        stored, fds = manager.receive()
        assert stored["FDSTORE"] == "1" and stored["FDNAME"] == "fuse" and len(fds) == 1
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "/dev/fuse"
        assert is_mounted(mountpoint)  # mounted, not served yet

        # ExecStart=: the stored descriptor comes as LISTEN_FDS=1, fd 3, named "fuse"
        daemon = subprocess.Popen([sys.executable, "-c", AS_SYSTEMD_PASSES_FDS, str(fds[0]),
                                   *commands["ExecStart"]], env=env, pass_fds=fds,
                                  stderr=subprocess.PIPE)  # fmt: skip
        os.close(fds[0])
        try:
            ready_at = manager.wait_for("READY")
        except TimeoutError:
            daemon.kill()
            raise AssertionError(daemon.communicate()[1].decode()) from None
        assert ready_at == {"READY": "1"}
        started = time.monotonic()
        assert (mountpoint / "models" / "w.bin").read_bytes() == b"w" * 100_000
        assert time.monotonic() - started < 5  # usable the moment READY=1 arrives
        with open("/proc/self/mounts") as f:
            line = next(ln for ln in f if ln.split()[1] == str(mountpoint))
        assert "fuse.artifactfs" in line and "default_permissions" in line
        assert s3.secret_key not in line

        # systemctl stop: SIGTERM, STOPPING=1, exit 0; then ExecStopPost=+ unmounts
        daemon.send_signal(signal.SIGTERM)
        manager.wait_for("STOPPING")
        assert daemon.wait(60) == 0
        post = subprocess.run(commands["ExecStopPost"], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert post.returncode == 0, post.stderr
        assert not is_mounted(mountpoint)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        for flag in ("-u", "-uz"):
            if is_mounted(mountpoint):
                subprocess.run(["fusermount3", flag, str(mountpoint)], capture_output=True)
        manager.close()


def test_kernel_mount_refuses_to_run_outside_systemd(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text(f"source = s3://bkt\nmountpoint = {tmp_path}\n")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    done = subprocess.run([BINARY, "kernel-mount", "--conf", str(conf)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "runs under systemd" in done.stderr
    assert not is_mounted(tmp_path)
