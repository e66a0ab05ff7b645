"""A real mount of a real S3 server, read with ordinary tools."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.fuse

MIB = 1 << 20
SIZES = [0, 1, 4095, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 9 * MIB + 7, 100 * MIB]


def _write_random(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            f.write(chunk)
            left -= len(chunk)


def test_objects_from_0_bytes_to_100_mib_read_back_identical(s3, bucket, mount):
    for size in SIZES:
        _write_random(bucket / "sizes" / f"obj-{size}", size)
    m = mount(server=s3)
    for size in SIZES:
        served = m.path / "sizes" / f"obj-{size}"
        assert served.stat().st_size == size
        subprocess.run(["cmp", str(served), str(bucket / "sizes" / f"obj-{size}")], check=True)


def test_ls_l_shows_sizes_mtimes_and_read_only_modes(s3, bucket, mount):
    (bucket / "d" / "e").mkdir(parents=True)
    (bucket / "d" / "f.txt").write_text("12345")
    os.utime(bucket / "d" / "f.txt", (1_600_000_000, 1_600_000_000))
    (bucket / "d" / "e" / "g").write_text("x")
    m = mount(server=s3)
    out = subprocess.run(["ls", "-l", str(m.path / "d")], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert "dr-xr-xr-x" in out and "-r--r--r--" in out
    st_f = os.stat(m.path / "d" / "f.txt")
    assert st_f.st_size == 5
    assert int(st_f.st_mtime) == 1_600_000_000
    assert st_f.st_uid == os.getuid() and st_f.st_gid == os.getgid()
    assert stat.S_ISDIR(os.stat(m.path / "d" / "e").st_mode)
    assert (m.path / "d" / "f.txt").read_text() == "12345"
    found = subprocess.run(["find", str(m.path), "-type", "f"], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    assert sorted(os.path.relpath(p, m.path) for p in found) == ["d/e/g", "d/f.txt"]
    assert not (m.path / "d" / "nope").exists()


def test_uid_and_gid_options(s3, bucket, mount):
    (bucket / "f").write_text("x")
    m = mount("s3://bkt", "--uid", "4321", "--gid", "8765", server=s3)
    st_f = os.stat(m.path / "f")
    assert (st_f.st_uid, st_f.st_gid) == (4321, 8765)


def test_prefix_mount_shows_only_the_prefix(s3, bucket, mount):
    (bucket / "experiments" / "exp1").mkdir(parents=True)
    (bucket / "experiments" / "exp1" / "output.tar").write_text("o")
    (bucket / "other").write_text("x")
    m = mount("s3://bkt/experiments", server=s3)
    assert os.listdir(m.path) == ["exp1"]
    assert (m.path / "exp1" / "output.tar").read_text() == "o"


def test_file_source_serves_a_local_directory(tmp_path, mount):
    src = tmp_path / "local"
    (src / "a").mkdir(parents=True)
    (src / "a" / "b.txt").write_text("local bytes")
    m = mount(f"file://{src}")
    assert (m.path / "a" / "b.txt").read_text() == "local bytes"


def test_close_and_fsync_succeed_without_the_daemon(tmp_path, mount):
    """flush/fsync are left unimplemented (ENOSYS) so the kernel stops asking;
    the caller must still see success, for files and directories alike."""
    src = tmp_path / "local"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    m = mount(f"file://{src}")
    for _ in range(3):
        fd = os.open(m.path / "f", os.O_RDONLY)
        assert os.read(fd, 10_000) == b"x" * 5000
        os.fsync(fd)
        os.fdatasync(fd)
        os.close(fd)
        dfd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    with open(m.path / "f", "rb") as f, open(m.path / "f", "rb") as g:  # two handles, one file
        assert f.read() == g.read()


@pytest.fixture
def nine_mib(s3, bucket, mount):
    data = os.urandom(9 * MIB + 333)
    (bucket / "r.bin").write_bytes(data)
    m = mount(server=s3)
    fd = os.open(m.path / "r.bin", os.O_RDONLY)
    yield fd, data
    os.close(fd)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_random_ranged_reads_equal_the_source(nine_mib, data):
    fd, content = nine_mib
    off = data.draw(st.integers(0, len(content) + 10))
    size = data.draw(st.integers(0, 3 * MIB))
    assert os.pread(fd, size, off) == content[off : off + size]


def test_sixteen_concurrent_readers(s3, bucket, mount):
    files = {}
    for i in range(4):
        data = os.urandom(6 * MIB + i)
        (bucket / f"c{i}").write_bytes(data)
        files[f"c{i}"] = hashlib.sha256(data).hexdigest()
    m = mount(server=s3)
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def reader(i):
        name = f"c{i % 4}"
        try:
            h = hashlib.sha256()
            with open(m.path / name, "rb") as f:
                if i % 2:  # half read backwards in 1 MiB steps: not sequential
                    size = os.fstat(f.fileno()).st_size
                    chunks = []
                    for off in reversed(range(0, size, MIB)):
                        chunks.append(os.pread(f.fileno(), MIB, off))
                    h.update(b"".join(reversed(chunks)))
                else:
                    while chunk := f.read(256 << 10):
                        h.update(chunk)
            results.append((name, h.hexdigest()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert len(results) == 16
    assert all(files[name] == digest for name, digest in results)


def test_a_prefix_of_20000_keys_lists_completely(s3, bucket, mount):
    big = bucket / "many"
    big.mkdir()
    for i in range(20_000):
        (big / f"k{i:05d}").touch()
    m = mount(server=s3)
    names = os.listdir(m.path / "many")
    assert len(names) == 20_000
    assert sorted(names) == [f"k{i:05d}" for i in range(20_000)]
    assert os.stat(m.path / "many" / "k19999").st_size == 0
    lists = len(s3.requests("LIST BUCKET"))
    assert lists >= 20  # 1,000 keys per page: pagination really happened
