"""With --allow-other the kernel checks permissions: the experiment's user reads its
artifacts read-only, another user reads only what the archive's modes let it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.support import Mount

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(os.geteuid() != 0, reason="acting as other users needs root"),
]

EXPERIMENT_UID = 4242
OTHER_UID = 4343


def as_user(uid: int, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), user=uid, group=uid, extra_groups=[], capture_output=True,
                          text=True, timeout=30, env={"PATH": os.environ["PATH"]})  # fmt: skip


def workspace_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode, data in [("train.py", 0o644, b"print('hi')\n"),
                                 ("private.key", 0o600, b"k3y\n")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("secret")
        info.type, info.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(info)
        info = tarfile.TarInfo("secret/notes.txt")
        info.size, info.mode = 3, 0o644
        tar.addfile(info, io.BytesIO(b"n\n\n"))
    return buf.getvalue()


@pytest.fixture
def public_dir():
    """A mount point other users can reach (pytest's tmp_path is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="artifactfs-perm-", dir="/tmp"))
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_allow_other_checks_permissions_for_the_experiment_user(s3, bucket, tmp_path, public_dir):
    (bucket / "ws.tar").write_bytes(workspace_tar())
    owner = ("--uid", str(EXPERIMENT_UID), "--gid", str(EXPERIMENT_UID))
    with Mount("s3://bkt", public_dir / "mnt", tmp_path / "cache", s3,
               ("--allow-other", *owner)) as m:  # fmt: skip
        ws = m.path / "ws"
        for uid in (EXPERIMENT_UID, OTHER_UID):
            assert as_user(uid, "cat", str(ws / "train.py")).stdout == "print('hi')\n"
        # the owner reads its 0600 file and 0700 directory; another user does not
        assert as_user(EXPERIMENT_UID, "cat", str(ws / "private.key")).stdout == "k3y\n"
        assert as_user(EXPERIMENT_UID, "cat", str(ws / "secret" / "notes.txt")).returncode == 0
        denied = as_user(OTHER_UID, "cat", str(ws / "private.key"))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        denied = as_user(OTHER_UID, "ls", str(ws / "secret"))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        # read-only for everyone, the owner included
        for cmd in (["touch", str(ws / "new")], ["rm", str(ws / "train.py")],
                    ["sh", "-c", f"echo x >> {ws / 'train.py'}"]):  # fmt: skip
            refused = as_user(EXPERIMENT_UID, *cmd)
            assert refused.returncode != 0, cmd
            assert any(why in refused.stderr for why in ("Read-only", "Permission denied"))
        assert (ws / "train.py").read_bytes() == b"print('hi')\n"

    # without --allow-other, FUSE lets no one but the mounting user in
    with Mount("s3://bkt", public_dir / "mnt", tmp_path / "cache", s3, owner) as m:
        refused = as_user(EXPERIMENT_UID, "ls", str(m.path))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
