"""Archives as directories, through a real mount, compared with what tarfile extracts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactfs.devserver import S3Server
from tests.proxy import CountingProxy
from tests.support import Mount

pytestmark = pytest.mark.fuse
MIB = 1 << 20
IMPLIED = ("dir", "implied")


def _tar_gz(members: dict[str, bytes], level: int = 9) -> bytes:
    """A gzip-compressed tar of regular files."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(plain.getvalue(), compresslevel=level)


def _python_tar(path: Path, fmt: int) -> None:
    with tarfile.open(path, "w", format=fmt) as tar:

        def add(name, data=None, kind=tarfile.REGTYPE, link="", mode=0o640):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 1_650_000_000, link
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("top", kind=tarfile.DIRTYPE, mode=0o755)
        add("top/a.txt", b"alpha\n" * 100)
        add("top/exec.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
        add("top/empty", b"")
        add("top/big.bin", os.urandom(3 * MIB + 17))
        add("top/link", kind=tarfile.SYMTYPE, link="a.txt")
        add("top/hard", kind=tarfile.LNKTYPE, link="top/a.txt")
        if fmt != tarfile.USTAR_FORMAT:
            add("top/" + "long-name-" * 12 + ".txt", b"long")
        add("nodir/child.txt", b"parent directory not in the archive")


def _gnu_tar(path: Path, fmt: str, tmp: Path) -> None:
    src = tmp / f"src-{fmt}"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "f.txt").write_bytes(b"gnu tar " * 500)
    (src / "d" / "e" / "g.bin").write_bytes(os.urandom(100_000))
    os.link(src / "d" / "f.txt", src / "d" / "hard.txt")
    os.symlink("f.txt", src / "d" / "sym")
    os.chmod(src / "d" / "f.txt", 0o600)
    subprocess.run(["tar", "-c", f"--format={fmt}", "-f", str(path), "-C", str(src), "."],
                   check=True)  # fmt: skip


def _expected(archive: Path) -> dict[str, tuple]:
    """What tarfile extracts: path -> (type, size, sha256, mode, link, mtime)."""
    out: dict[str, tuple] = {}
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        by_name = {m.name.lstrip("./"): m for m in members}
        for m in members:
            name = m.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            if m.isdir():
                out[name] = ("dir", None, None, m.mode & 0o7777, None, int(m.mtime))
            elif m.issym():
                out[name] = ("symlink", None, None, None, m.linkname, int(m.mtime))
            else:
                target = by_name[m.linkname.lstrip("./")] if m.islnk() else m
                data = tar.extractfile(target).read()
                out[name] = ("file", len(data), hashlib.sha256(data).hexdigest(),
                             m.mode & 0o7777, None, int(m.mtime))  # fmt: skip
    for name in list(out):  # directories that extraction creates without an entry
        parent = name.rpartition("/")[0]
        while parent and parent not in out:
            out[parent] = IMPLIED
            parent = parent.rpartition("/")[0]
    return out


def _served(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, None, st.st_mode & 0o7777, None, int(st.st_mtime))
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", None, None, None, os.readlink(p), int(st.st_mtime))
            else:
                data = p.read_bytes()
                out[rel] = ("file", st.st_size, hashlib.sha256(data).hexdigest(),
                            st.st_mode & 0o7777, None, int(st.st_mtime))  # fmt: skip
    return out


def test_tar_flavours_match_what_tarfile_extracts(s3, bucket, mount, tmp_path):
    archives = {}
    for label, fmt in [("ustar", tarfile.USTAR_FORMAT), ("gnu", tarfile.GNU_FORMAT),
                       ("pax", tarfile.PAX_FORMAT)]:  # fmt: skip
        path = bucket / "py" / f"{label}.tar"
        path.parent.mkdir(exist_ok=True)
        _python_tar(path, fmt)
        archives[f"py/{label}"] = path
    for fmt in ["v7", "ustar", "gnu", "posix"]:
        path = bucket / "gnu" / f"{fmt}.tar.gz"  # an uncompressed tar under a .tar.gz key
        path.parent.mkdir(exist_ok=True)
        _gnu_tar(path, fmt, tmp_path)
        archives[f"gnu/{fmt}"] = path
    m = mount(server=s3)
    for served, source in archives.items():
        root = m.path / served
        assert root.is_dir(), served
        expected = _expected(source)
        got = _served(root)
        for name, value in expected.items():
            if value == IMPLIED and got.get(name, ("",))[0] == "dir":
                got[name] = IMPLIED
        if "v7" in served:  # v7 has no directory entries' modes beyond what tar wrote
            assert set(got) == set(expected)
        assert got == expected, served
    assert os.readlink(m.path / "py" / "pax" / "top" / "link") == "a.txt"


def test_archives_modes_and_name_collisions(s3, bucket, mount):
    (bucket / "exp").mkdir()
    _python_tar(bucket / "exp" / "modeldir.tar", tarfile.PAX_FORMAT)
    _python_tar(bucket / "exp" / "taken.tar", tarfile.PAX_FORMAT)
    (bucket / "exp" / "taken").mkdir()
    (bucket / "exp" / "taken" / "x").write_text("x")
    (bucket / "exp" / "notes.tar").write_bytes(b"not really a tar" * 100)
    unpack = mount(server=s3)
    assert sorted(os.listdir(unpack.path / "exp")) == ["modeldir", "notes.tar", "taken",
                                                       "taken.tar"]  # fmt: skip
    assert (unpack.path / "exp" / "taken.tar").is_dir()  # stem taken: full name kept
    assert (unpack.path / "exp" / "notes.tar").is_file()  # named like a tar, is not one
    assert (unpack.path / "exp" / "modeldir" / "top" / "a.txt").read_bytes() == b"alpha\n" * 100
    raw = mount("s3://bkt", "--archives", "raw", server=s3, name="raw", cache="cache-raw")
    assert (raw.path / "exp" / "modeldir.tar").is_file()
    both = mount("s3://bkt", "--archives", "both", server=s3, name="both", cache="cache-both")
    assert (both.path / "exp" / "modeldir.tar").is_file()
    assert (both.path / "exp" / "modeldir").is_dir()


def test_index_is_reused_by_a_later_mount_without_reading_the_archive(s3, bucket, mount):
    _python_tar(bucket / "w.tar", tarfile.PAX_FORMAT)
    m = mount(server=s3)
    first = sorted(os.listdir(m.path / "w" / "top"))
    gets_before = len([r for r in s3.requests("GET OBJECT") if r.endswith("Object: w.tar")])
    assert gets_before >= 1
    m.stop()
    m.start()
    assert sorted(os.listdir(m.path / "w" / "top")) == first
    gets_after = len([r for r in s3.requests("GET OBJECT") if r.endswith("Object: w.tar")])
    assert gets_after == gets_before  # no byte of the archive was read again
    assert "indexed w.tar" in m.log()


def test_hostile_members_are_skipped_and_the_rest_is_served(s3, bucket, mount):
    with tarfile.open(bucket / "evil.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ["../../etc/passwd", "/abs.txt", "ok/../../../x", "n" * 300, "fine.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"data"))
        info = tarfile.TarInfo("outside")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/shadow"
        tar.addfile(info)
    m = mount(server=s3)
    assert sorted(os.listdir(m.path / "evil")) == ["abs.txt", "fine.txt", "outside"]
    assert (m.path / "evil" / "fine.txt").read_bytes() == b"data"
    assert os.readlink(m.path / "evil" / "outside") == "../../../../etc/shadow"  # kept as is
    log = m.log()
    assert "evil.tar" in log and "../../etc/passwd" in log


def test_replaced_archive_gets_a_new_index(s3, bucket, mount):
    def make(content: bytes) -> None:
        with tarfile.open(bucket / "r.tar", "w") as tar:
            info = tarfile.TarInfo("v.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

    make(b"version one")
    m = mount("s3://bkt", "--metadata-ttl", "0", server=s3)
    assert (m.path / "r" / "v.txt").read_bytes() == b"version one"
    make(b"version two, longer")
    assert (m.path / "r" / "v.txt").read_bytes() == b"version two, longer"


def test_listing_a_1_gib_tar_fetches_under_1_percent(tmp_path, mount):
    server = S3Server(tmp_path / "s3big", tmp_path / "rclone-big.log", etag_hash="",
                      log_requests=False)  # fmt: skip
    big = server.bucket_dir("bkt") / "huge.tar"
    with open(big, "wb") as f:  # holes read as zeros: a 1 GiB tar written in no time
        for name, size in [("part0.bin", 256 * MIB), ("part1.bin", 256 * MIB),
                           ("middle/train.py", 100 * 1024),
                           ("part2.bin", 256 * MIB), ("part3.bin", 256 * MIB)]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = size
            f.write(info.tobuf(tarfile.PAX_FORMAT))
            if name.endswith(".py"):
                f.write(b"p" * size)
            else:
                f.seek(size, os.SEEK_CUR)
        f.write(bytes(2 * tarfile.BLOCKSIZE))
    size = big.stat().st_size
    with server, CountingProxy(server.port) as proxy:
        m = mount("s3://bkt", "--endpoint-url", proxy.endpoint_url, server=server)
        listing = subprocess.run(["ls", "-lR", str(m.path / "huge")], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
        assert "part3.bin" in listing and "train.py" in listing
        listed = proxy.downstream
        assert listed < size / 100, f"listing moved {listed} bytes of {size}"
        assert (m.path / "huge" / "middle" / "train.py").read_bytes() == b"p" * 100 * 1024
        read = proxy.downstream - listed
        assert read < 2 * 8 * MIB + 64 * 1024  # at most the two blocks that overlap it


COMPRESSORS = {"gz": ["gzip", "-c"], "bz2": ["bzip2", "-c"], "xz": ["xz", "-c"],
               "zst": ["zstd", "-q", "-c"], "lz4": ["lz4", "-q", "-c"]}  # fmt: skip


def test_compressed_tars_from_each_compressor_cli(s3, bucket, mount, tmp_path):
    plain = tmp_path / "plain.tar"
    _python_tar(plain, tarfile.PAX_FORMAT)
    expected = _expected(plain)
    for name, cmd in COMPRESSORS.items():
        with open(bucket / f"a-{name}.tar.{name}", "wb") as out:
            subprocess.run([*cmd, str(plain)], stdout=out, check=True)
    (bucket / "lies.tar.gz").write_bytes(plain.read_bytes())  # uncompressed under .tar.gz
    m = mount(server=s3)
    for name in [*COMPRESSORS, "lies"]:
        served_dir = m.path / (f"a-{name}" if name != "lies" else "lies")
        assert served_dir.is_dir(), name
        got = _served(served_dir)
        for key, value in expected.items():
            if value == IMPLIED and got.get(key, ("",))[0] == "dir":
                got[key] = IMPLIED
        assert got == expected, name
    assert m.log().count("indexed a-") == len(COMPRESSORS)


def test_compressed_member_is_served_again_after_its_blocks_are_evicted(s3, bucket, mount):
    data = {f"f{i}.bin": os.urandom(300 * 1024) for i in range(8)}
    (bucket / "c.tar.gz").write_bytes(_tar_gz(data))
    # 64 KiB blocks and a 512 KiB cache: most decoded blocks are evicted during the index pass
    m = mount("s3://bkt", "--block-size", "64K", "--cache-size", "512K", "--memory-budget", "128K",
              server=s3)  # fmt: skip
    for name, content in data.items():
        assert (m.path / "c" / name).read_bytes() == content, name


def test_indexing_a_tar_gz_fetches_it_about_once(s3, bucket, mount):
    """The one decode pass reads the archive once: indexed_gzip steps back into
    the last window whenever it records a seek point, which must not refetch."""
    packed = _tar_gz({f"part{i}.bin": os.urandom(8 * MIB) for i in range(6)}, level=1)
    (bucket / "p.tar.gz").write_bytes(packed)
    with CountingProxy(s3.port) as proxy:
        m = mount("s3://bkt", "--endpoint-url", proxy.endpoint_url, server=s3)
        assert sorted(os.listdir(m.path / "p")) == [f"part{i}.bin" for i in range(6)]
        assert proxy.downstream < 1.1 * len(packed), (proxy.downstream, len(packed))


def test_gzip_member_is_decoded_again_from_one_seek_point(s3, bucket, mount):
    """With the index kept and the decoded blocks gone, a member deep in a .tar.gz
    is decoded from the seek point before it: only that stretch of the archive
    travels. A damaged seek-point file falls back to decoding from the start."""
    members = {"a.bin": os.urandom(40 * MIB), "mid.txt": os.urandom(200 * 1024),
               "z.bin": os.urandom(3 * MIB)}  # fmt: skip
    (bucket / "g.tar.gz").write_bytes(_tar_gz(members, level=1))
    m = mount("s3://bkt", "--block-size", "1M", server=s3)
    assert (m.path / "g" / "mid.txt").read_bytes() == members["mid.txt"]  # index pass
    m.stop()
    (seek_points,) = (m.cache_dir / "index").glob("*.seekpoints")
    with CountingProxy(s3.port) as proxy:
        for damaged in (False, True):
            shutil.rmtree(m.cache_dir / "blocks")
            if damaged:
                raw = seek_points.read_bytes()  # a flipped bit in the point table
                seek_points.write_bytes(raw[:60] + bytes([raw[60] ^ 4]) + raw[61:])
            m.args = ("--block-size", "1M", "--endpoint-url", proxy.endpoint_url)
            m.start()
            before = proxy.downstream
            assert (m.path / "g" / "mid.txt").read_bytes() == members["mid.txt"]
            moved = proxy.downstream - before
            if not damaged:
                # the seek point before it (2 MiB apart), the block, a read buffer; a
                # second span at most for the block read ahead. Not the 40 MiB before it.
                assert moved < 12 * MIB, moved
            else:
                assert moved > 40 * MIB, moved
                assert "seek points unusable" in m.log()
                assert not seek_points.exists()
            assert (m.path / "g" / "z.bin").read_bytes() == members["z.bin"]
            m.stop()


def test_corrupt_compressed_stream_keeps_what_decoded(s3, bucket, mount, tmp_path):
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for i in range(20):
            content = os.urandom(50_000)
            info = tarfile.TarInfo(f"m{i:02d}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    blob = bytearray(gzip.compress(plain.getvalue(), compresslevel=1))
    blob[len(blob) * 2 // 3 :] = os.urandom(len(blob) - len(blob) * 2 // 3)
    (bucket / "broken.tar.gz").write_bytes(bytes(blob))
    (bucket / "fine.txt").write_text("still here")
    m = mount(server=s3)
    names = os.listdir(m.path / "broken")
    assert 0 < len(names) < 20
    with tarfile.open(fileobj=io.BytesIO(plain.getvalue())) as ref:
        for name in names:
            assert (m.path / "broken" / name).read_bytes() == ref.extractfile(name).read()
    assert (m.path / "fine.txt").read_text() == "still here"
    assert "broken.tar.gz: corrupt gzip stream" in m.log()


def test_decompression_bomb_is_cut_at_the_limit(s3, bucket, mount):
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        info = tarfile.TarInfo("small.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"small"))
        info = tarfile.TarInfo("bomb.bin")
        info.size = 64 * MIB
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    (bucket / "bomb.tar.gz").write_bytes(gzip.compress(plain.getvalue(), compresslevel=9))
    m = mount("s3://bkt", "--max-decoded-size", "8M", server=s3)
    assert os.listdir(m.path / "bomb") == ["small.txt"]
    assert (m.path / "bomb" / "small.txt").read_bytes() == b"small"
    assert "passed the limit" in m.log()


def test_zip_stored_deflated_and_zip64_match_zipfile(s3, bucket, mount):
    import calendar
    import zipfile

    contents = {"docs/readme.txt": b"read me\n" * 2000, "bin/blob": os.urandom(2 * MIB + 3),
                "empty.txt": b"", "deep/a/b/c.txt": b"deep"}  # fmt: skip
    for label, method, zip64 in [("stored", zipfile.ZIP_STORED, False),
                                 ("deflated", zipfile.ZIP_DEFLATED, False),
                                 ("zip64", zipfile.ZIP_DEFLATED, True)]:  # fmt: skip
        with zipfile.ZipFile(bucket / f"{label}.zip", "w", compression=method) as z:
            z.writestr(zipfile.ZipInfo("docs/", date_time=(2024, 5, 6, 7, 8, 10)), b"")
            for name, data in contents.items():
                info = zipfile.ZipInfo(name, date_time=(2024, 5, 6, 7, 8, 10))
                info.compress_type = method
                info.external_attr = 0o640 << 16
                with z.open(info, "w", force_zip64=zip64) as f:
                    f.write(data)
    m = mount(server=s3)
    for label in ("stored", "deflated", "zip64"):
        root = m.path / label
        for name, data in contents.items():
            p = root / name
            assert p.read_bytes() == data, (label, name)
            st = p.stat()
            assert st.st_size == len(data)
            assert st.st_mode & 0o777 == 0o640
            assert int(st.st_mtime) == calendar.timegm((2024, 5, 6, 7, 8, 10, 0, 0, 0))
        assert sorted(os.listdir(root)) == ["bin", "deep", "docs", "empty.txt"]
        with open(root / "bin" / "blob", "rb") as f:  # random access into a deflated member
            f.seek(MIB + 5)
            assert f.read(100) == contents["bin/blob"][MIB + 5 : MIB + 105]


def test_zip_command_with_symlinks_modes_and_mtimes(s3, bucket, mount, tmp_path):
    src = tmp_path / "zsrc"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "pkg" / "run.sh", 0o751)
    (src / "pkg" / "data.csv").write_text("a,b\n" * 10_000)
    os.utime(src / "pkg" / "data.csv", (1_600_000_123, 1_600_000_123))
    os.symlink("data.csv", src / "pkg" / "latest.csv")
    subprocess.run(["zip", "-q", "-r", "-y", str(bucket / "z.zip"), "pkg"], cwd=src, check=True)
    m = mount(server=s3)
    root = m.path / "z" / "pkg"
    assert (root / "data.csv").read_text() == "a,b\n" * 10_000
    assert int((root / "data.csv").stat().st_mtime) == 1_600_000_123
    assert (root / "run.sh").stat().st_mode & 0o777 == 0o751
    assert os.readlink(root / "latest.csv") == "data.csv"


def test_a_directory_of_50000_members_lists_completely(s3, bucket, mount):
    """Archive directories are paged from the index (1,000,000 members: make bench)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo()
        for i in range(50_000):
            info.name = f"flat/f{i:05d}"
            tar.addfile(info)
    (bucket / "many.tar").write_bytes(buf.getvalue())
    m = mount(server=s3)
    names = os.listdir(m.path / "many" / "flat")
    assert len(names) == 50_000 and len(set(names)) == 50_000
    assert sorted(names) == [f"f{i:05d}" for i in range(50_000)]


def _archive_gets(s3, key: str) -> int:
    return sum(1 for r in s3.requests("GET OBJECT") if r.endswith(f"Object: {key}"))


def test_published_index_sidecar_is_used_by_other_mounts(s3, bucket, mount):
    import sqlite3

    import zstandard

    _python_tar(bucket / "w.tar", tarfile.PAX_FORMAT)
    a = mount("s3://bkt", "--publish-index", server=s3, name="a", cache="cache-a")
    expected = sorted(os.listdir(a.path / "w" / "top"))
    assert (bucket / "w.tar.afsidx").exists()
    assert sorted(os.listdir(a.path)) == ["w"]  # the sidecar is not shown
    a.stop()

    before = _archive_gets(s3, "w.tar")
    b = mount(server=s3, name="b", cache="cache-b")  # another node: nothing cached
    assert sorted(os.listdir(b.path / "w" / "top")) == expected
    assert (b.path / "w" / "top" / "a.txt").read_bytes() == b"alpha\n" * 100
    assert "taken from its sidecar" in b.log()
    # no scan: the archive was read only for the member's block (and one sniff)
    assert _archive_gets(s3, "w.tar") - before <= 2
    b.stop()

    # a sidecar naming an unclean path is refused, and the archive scanned instead
    raw = zstandard.ZstdDecompressor().decompress((bucket / "w.tar.afsidx").read_bytes(),
                                                  max_output_size=1 << 30)  # fmt: skip
    hostile = bucket.parent / "hostile.sqlite"
    hostile.write_bytes(raw)
    with sqlite3.connect(hostile) as db:
        db.execute("UPDATE members SET path = '../evil', parent = '..' WHERE path = 'top/a.txt'")
    (bucket / "w.tar.afsidx").write_bytes(zstandard.ZstdCompressor().compress(hostile.read_bytes()))
    c = mount(server=s3, name="c", cache="cache-c")
    assert sorted(os.listdir(c.path / "w" / "top")) == expected
    assert "ignored (stale or corrupt" in c.log()


def test_stale_or_corrupt_sidecar_is_ignored(s3, bucket, mount):
    _python_tar(bucket / "s.tar", tarfile.PAX_FORMAT)
    a = mount("s3://bkt", "--publish-index", server=s3, name="a", cache="cache-a")
    os.listdir(a.path / "s")
    a.stop()
    with tarfile.open(bucket / "s.tar", "w") as tar:  # replaced: the sidecar is now stale
        info = tarfile.TarInfo("new.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"new"))
    b = mount(server=s3, name="b", cache="cache-b")
    assert os.listdir(b.path / "s") == ["new.txt"]
    assert "ignored (stale or corrupt" in b.log()
    (bucket / "s.tar.afsidx").write_bytes(b"not an index at all")
    c = mount(server=s3, name="c", cache="cache-c")
    assert (c.path / "s" / "new.txt").read_bytes() == b"new"
    assert "ignored (stale or corrupt" in c.log()


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_tar_sparse_files(s3, bucket, mount, tmp_path, fmt):
    src = tmp_path / f"sparse-{fmt}"
    src.mkdir()
    data_at = {0: b"head" * 1000, 5 * MIB: os.urandom(70_000), 9 * MIB - 10: b"tail!" * 2}
    with open(src / "disk.img", "wb") as f:
        f.truncate(9 * MIB)
        for offset, data in data_at.items():
            f.seek(offset)
            f.write(data)
    expected = (src / "disk.img").read_bytes()
    subprocess.run(["tar", "-c", "--sparse", f"--format={fmt}", "-f", str(bucket / "sp.tar"),
                    "-C", str(src), "disk.img"], check=True)  # fmt: skip
    assert (bucket / "sp.tar").stat().st_size < 2 * MIB  # really stored sparse
    m = mount(server=s3)
    served = m.path / "sp" / "disk.img"
    assert served.stat().st_size == len(expected)
    assert served.read_bytes() == expected
    with open(served, "rb") as f:
        f.seek(5 * MIB - 3)
        assert f.read(10) == expected[5 * MIB - 3 : 5 * MIB + 7]


def test_single_compressed_files_show_decoded(s3, bucket, mount):
    import bz2
    import lzma

    import zstandard

    text = b"".join(b"line %d of the notes\n" % i for i in range(200_000))
    (bucket / "notes.txt.gz").write_bytes(gzip.compress(text))
    (bucket / "log.txt.bz2").write_bytes(bz2.compress(text))
    (bucket / "data.csv.xz").write_bytes(lzma.compress(text))
    (bucket / "w.bin.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (bucket / "fake.gz").write_bytes(b"plain text, not gzip at all")
    m = mount(server=s3)
    assert sorted(os.listdir(m.path)) == ["data.csv", "fake.gz", "log.txt", "notes.txt", "w.bin"]
    for name in ("notes.txt", "log.txt", "data.csv", "w.bin"):
        assert os.stat(m.path / name).st_size == len(text), name
        assert (m.path / name).read_bytes() == text, name
    with open(m.path / "notes.txt", "rb") as f:
        f.seek(len(text) // 2)
        assert f.read(50) == text[len(text) // 2 : len(text) // 2 + 50]
    assert (m.path / "fake.gz").read_bytes() == b"plain text, not gzip at all"
    both = mount("s3://bkt", "--archives", "both", server=s3, name="both", cache="cache-both")
    assert (both.path / "notes.txt.gz").read_bytes() == (bucket / "notes.txt.gz").read_bytes()
    assert (both.path / "notes.txt").read_bytes() == text


_names = st.text(alphabet="abcxyz019-_.é ", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..") and not n.startswith(" ")
)
_trees = st.dictionaries(
    st.lists(_names, min_size=1, max_size=3).map("/".join),
    st.tuples(st.binary(max_size=3000), st.sampled_from([0o644, 0o600, 0o755, 0o444])),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def live_mount(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hyp")
    with S3Server(tmp / "s3", tmp / "rclone.log") as server:
        server.bucket_dir("bkt")
        with Mount("s3://bkt", tmp / "mnt", tmp / "cache", server,
                   ("--metadata-ttl", "0", "--negative-ttl", "0")) as m:  # fmt: skip
            yield server.bucket_dir("bkt"), m.path


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(tree=_trees, fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def test_hypothesis_trees_match_what_tarfile_extracts(live_mount, tree, fmt):
    bucket, mnt = live_mount
    files = {p: v for p, v in tree.items()
             if not any(q.startswith(p + "/") for q in tree)}  # fmt: skip
    name = f"h{hashlib.sha256(repr((sorted(files.items()), fmt)).encode()).hexdigest()[:16]}"
    path = bucket / f"{name}.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for member, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    expected = _expected(path)
    got = _served(mnt / name)
    for key, value in expected.items():
        if value == IMPLIED and got.get(key, ("",))[0] == "dir":
            got[key] = IMPLIED
    assert got == expected
