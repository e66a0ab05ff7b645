"""Tar detection, scanning and indexing against what Python's tarfile and GNU tar make."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time

import pytest

from artifactfs.archive.detect import Format, archive_stem, detect
from artifactfs.archive.index import ArchiveIndex, IndexUnusable, build_index
from artifactfs.archive.members import clean_path
from artifactfs.archive.rangefile import RangeFile
from artifactfs.archive.tar import scan_tar


def _ranges(data: bytes) -> RangeFile:
    return RangeFile(lambda off, n: data[off : off + n], len(data))


def _tar(fmt: int, entries: dict[str, bytes | None], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_scan_matches_tarfile(fmt):
    long = "deep/" + "x" * 120 + "/file.txt" if fmt != tarfile.USTAR_FORMAT else "deep/f.txt"
    entries = {"a": None, "a/one.txt": b"1" * 1000, "a/b/two.bin": os.urandom(70_000),
               long: b"long", "empty": b""}  # fmt: skip
    data = _tar(fmt, entries, {"a/link": "one.txt"})
    assert detect(data[:512]) is Format.TAR
    members = {m.path: m for m in scan_tar(_ranges(data), len(data), "t")}
    with tarfile.open(fileobj=io.BytesIO(data)) as ref:
        for info in ref.getmembers():
            m = members[info.name]
            assert m.mode == info.mode & 0o7777
            assert m.mtime_ns == int(info.mtime) * 10**9
            if info.isreg():
                assert data[m.offset : m.offset + m.size] == ref.extractfile(info).read()
            if info.issym():
                assert m.kind == "symlink" and m.link == info.linkname


def test_listing_reads_only_headers():
    big = os.urandom(3 << 20)
    data = _tar(tarfile.PAX_FORMAT, {f"m{i}": big for i in range(4)})
    f = _ranges(data)
    assert len(list(scan_tar(f, len(data), "t"))) == 4
    assert f.bytes_fetched < len(data) / 20


@pytest.mark.parametrize("gnu_format", ["v7", "ustar", "gnu", "posix"])
def test_gnu_tar_formats_and_hard_links(tmp_path, gnu_format):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_bytes(b"hello" * 100)
    os.link(src / "d" / "f.txt", src / "d" / "hard.txt")
    os.symlink("f.txt", src / "d" / "sym")
    out = tmp_path / "a.tar"
    subprocess.run(["tar", "-c", f"--format={gnu_format}", "-f", str(out), "-C", str(src), "."],
                   check=True)  # fmt: skip
    data = out.read_bytes()
    assert detect(data[:512]) is Format.TAR
    idx_path = tmp_path / "idx.sqlite"
    build_index(idx_path, "v1", scan_tar(_ranges(data), len(data), "t"), 0)
    idx = ArchiveIndex(idx_path, "v1")
    f, hard = idx.lookup("d/f.txt"), idx.lookup("d/hard.txt")
    assert f is not None and hard is not None and hard.kind == "file"
    assert data[hard.offset : hard.offset + hard.size] == b"hello" * 100
    assert idx.lookup("d/sym").kind == "symlink" and idx.lookup("d/sym").link == "f.txt"
    assert [m.path for m in idx.children("d")] == ["d/f.txt", "d/hard.txt", "d/sym"]


def test_index_fills_in_missing_dirs_and_last_duplicate_wins(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for content in (b"first", b"second!"):
            info = tarfile.TarInfo("x/y/z.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    build_index(tmp_path / "i", "v", scan_tar(_ranges(data), len(data), "t"), 5)
    idx = ArchiveIndex(tmp_path / "i", "v")
    z = idx.lookup("x/y/z.txt")
    assert data[z.offset : z.offset + z.size] == b"second!"
    assert idx.lookup("x").kind == "dir" and idx.lookup("x/y").kind == "dir"
    assert [m.path for m in idx.children("")] == ["x"]


def test_hostile_names_are_skipped_and_the_rest_served(caplog):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ["../escape", "/abs/ok.txt", "a/../../b", "n" * 300, "good.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
    data = buf.getvalue()
    paths = [m.path for m in scan_tar(_ranges(data), len(data), "hostile.tar")]
    assert paths == ["abs/ok.txt", "good.txt"]
    assert "hostile.tar" in caplog.text and "../escape" in caplog.text


def test_truncated_archive_keeps_what_was_complete(caplog):
    data = _tar(tarfile.PAX_FORMAT, {"a": b"a" * 5000, "b": b"b" * 5000, "c": b"c" * 5000})
    cut = data[: len(data) // 2 + 100]
    paths = [m.path for m in scan_tar(_ranges(cut), len(cut), "cut.tar")]
    assert "a" in paths and "c" not in paths
    assert "cut.tar" in caplog.text


def test_index_of_another_version_or_damaged_is_refused(tmp_path):
    data = _tar(tarfile.PAX_FORMAT, {"f": b"x"})
    build_index(tmp_path / "i", "etag-1", scan_tar(_ranges(data), len(data), "t"), 0)
    with pytest.raises(IndexUnusable):
        ArchiveIndex(tmp_path / "i", "etag-2")
    (tmp_path / "i").write_bytes(b"garbage" * 100)
    with pytest.raises(IndexUnusable):
        ArchiveIndex(tmp_path / "i", "etag-1")


@pytest.mark.parametrize(
    ("head", "fmt"),
    [(b"\x1f\x8b\x08", Format.GZIP), (b"BZh91AY", Format.BZIP2), (b"\xfd7zXZ\x00\x00", Format.XZ),
     (b"\x28\xb5\x2f\xfd", Format.ZSTD), (b"\x04\x22\x4d\x18", Format.LZ4),
     (b"PK\x03\x04", Format.ZIP), (b"hello world" * 60, None), (b"", None)],
)  # fmt: skip
def test_detect_by_content(head, fmt):
    assert detect(head) is fmt


def test_names():
    assert archive_stem("modeldir.tar") == "modeldir"
    assert archive_stem("abc.tar.gz") == "abc"
    assert archive_stem("notes.txt") is None
    assert archive_stem(".tar") is None
    assert clean_path("./a/./b/") == "a/b"
    assert clean_path("/etc/passwd") == "etc/passwd"
    assert clean_path("a/../b") is None
    assert clean_path("a\0b") is None
    assert clean_path("./") is None


def test_a_million_members_index_streams(tmp_path):
    """Scanning does not keep members in memory: 100,000 here, quickly (1M in make bench)."""
    from artifactfs.archive.members import Member

    start = time.monotonic()
    n = build_index(tmp_path / "big", "v",
                    (Member(f"d{i // 1000}/f{i}", "file", 0o644, 1, 0, i * 1024)
                     for i in range(100_000)), 0)  # fmt: skip
    assert n == 100_000
    idx = ArchiveIndex(tmp_path / "big", "v")
    assert len(idx.children("d7")) == 1000
    assert len(idx.children("")) == 100
    assert time.monotonic() - start < 30


def test_read_ahead_fetches_each_window_once_and_in_order_of_need():
    """The decode pass asks for consecutive windows; the next two are already on
    their way, none is fetched twice, and a jump drops the stale ones."""
    import threading

    from artifactfs.archive.rangefile import ReadAhead

    data = bytes(range(256)) * 4096  # 1 MiB
    asked: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fetch(offset: int, length: int) -> bytes:
        with lock:
            asked.append((offset, length))
        return data[offset : offset + length]

    ahead = ReadAhead(fetch, len(data), depth=2)
    raw = RangeFile(ahead, len(data), window=64 << 10, max_window=64 << 10)
    got = b"".join(raw.read(16 << 10) for _ in range(32))  # a decoder's small reads
    assert got == data[: len(data) // 2]
    raw.seek(900_000)  # a jump: the windows fetched ahead of 512 KiB are dropped
    assert raw.read(1000) == data[900_000:901_000]
    ahead.close()
    assert len(asked) == len(set(asked))  # nothing fetched twice
    assert ahead.wasted >= 1
    assert sum(n for _, n in asked) <= len(data) // 2 + 5 * (64 << 10)
