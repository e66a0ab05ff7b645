"""Fuzzing every parser of untrusted input: archives, compressed streams, experiment
JSON, StudioML config. Inputs are valid seeds mutated by hypothesis (bit flips,
cuts, splices, overwrites) plus raw random bytes. The contract: no crash (only
the documented error types), no hang (each example under a deadline), bounded
memory (decoding capped), and every member served is safe and inside the archive.

`make test` runs a few hundred examples per target; `make faults` many more
(ARTIFACTFS_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import lzma
import os
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import lz4.frame
import pytest
import yaml
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactfs.archive.codecs import (
    DECODE_ERRORS,
    open_at_checkpoint,
    open_decoder,
    save_checkpoints,
)
from artifactfs.archive.detect import Format, detect
from artifactfs.archive.gzindex import SeekPointsDamaged, read_seek_points
from artifactfs.archive.index import ArchiveIndex, build_index
from artifactfs.archive.members import clean_path
from artifactfs.archive.rangefile import RangeFile
from artifactfs.archive.stream import DecodeLimit
from artifactfs.archive.tar import scan_tar
from artifactfs.archive.zip import scan_zip
from artifactfs.errors import ConfigError
from artifactfs.studio import load_config, parse_experiment
from tests.reliability import record

EXAMPLES = int(os.environ.get("ARTIFACTFS_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
executions: Counter[str] = Counter()
pytestmark = pytest.mark.timeout(max(300, EXAMPLES // 20))  # 50 ms an example, at worst


@pytest.fixture(autouse=True, scope="module")
def _report():
    yield
    for target, n in sorted(executions.items()):
        record(f"fuzz {target}", executions=n, crashes=0)


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR)  # scanners warn on every bad input, by design


def _tar_seed() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("a/x.txt", b"x" * 700), ("b" * 150 + "/long.bin", b"y" * 1500)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a/link")
        link.type, link.linkname = tarfile.SYMTYPE, "x.txt"
        tar.addfile(link)
    return buf.getvalue()


def _zip_seed() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("d/one.txt", b"1" * 300, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("two.bin", b"2" * 100, compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


TAR, ZIP = _tar_seed(), _zip_seed()
COMPRESSED = {
    Format.GZIP: gzip.compress(TAR),
    Format.BZIP2: bz2.compress(TAR),
    Format.XZ: lzma.compress(TAR),
    Format.ZSTD: zstandard.ZstdCompressor().compress(TAR),
    Format.LZ4: lz4.frame.compress(TAR),
}


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "overwrite", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            data[at:at] = data[: draw(st.integers(0, 600))]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=32))
            data[at : at + len(chunk)] = chunk
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _check_members(members: list, size: int) -> None:
    for m in members:
        assert clean_path(m.path) == m.path, m.path  # no '..', no '/', no NUL, names <= 255
        stored = m.csize if m.codec == "deflate" else m.size
        if m.kind == "file" and m.codec != "sparse":
            assert m.offset >= 0 and m.offset + stored <= size, (m.path, m.offset, stored)


def _ranges(data: bytes) -> RangeFile:
    return RangeFile(lambda off, n: data[off : off + n], len(data))


@FUZZ
@given(st.one_of(mutated(TAR), st.binary(max_size=3000)))
def test_fuzz_tar_scanner_and_index(tmp_path_factory, data):
    executions["tar scanner + index"] += 1
    members = list(scan_tar(_ranges(data), len(data), "fuzz"))  # must not raise
    _check_members(members, len(data))
    path = tmp_path_factory.mktemp("idx") / "i"
    build_index(path, "v", iter(members), 0)
    index = ArchiveIndex(path, "v")
    try:
        for m in members:
            assert index.lookup(m.path) is not None
        index.children("")
    finally:
        index.close()


@FUZZ
@given(st.one_of(mutated(ZIP), st.binary(max_size=2000)))
def test_fuzz_zip_scanner(data):
    executions["zip scanner"] += 1
    _check_members(list(scan_zip(_ranges(data), len(data), "fuzz")), len(data))


@FUZZ
@given(st.data())
@pytest.mark.parametrize("fmt", sorted(COMPRESSED, key=lambda f: f.value))
def test_fuzz_decoders_fail_cleanly_and_stay_bounded(fmt, data):
    executions[f"{fmt.value} decoder"] += 1
    raw = data.draw(mutated(COMPRESSED[fmt]))
    decoded = 0
    try:
        with open_decoder(fmt, io.BytesIO(raw), checkpoints=fmt is Format.GZIP) as reader:
            while chunk := reader.read(1 << 16):
                decoded += len(chunk)
                if decoded > 64 << 20:  # what --max-decoded-size does in the daemon
                    raise DecodeLimit("bound")
        members = list(scan_tar(io.BytesIO(b""), -1, "fuzz", stream=True))
        assert members == []
    except (DecodeLimit, *DECODE_ERRORS):
        pass


def _seek_points_seed() -> tuple[bytes, bytes]:
    """A gzip of random and repetitive data, and its seek-point file."""
    import random
    import tempfile

    import indexed_gzip

    rnd = random.Random(3)
    data = b"".join(rnd.randbytes(40_000) + b"text\n" * 8000 for _ in range(6))
    compressed = gzip.compress(data)
    reader = indexed_gzip.IndexedGzipFile(fileobj=io.BytesIO(compressed), spacing=64 << 10)
    reader.build_full_index()
    with tempfile.TemporaryDirectory() as d:
        save_checkpoints(reader, Path(d) / "x.seekpoints")
        return compressed, (Path(d) / "x.seekpoints").read_bytes()


GZ_DATA, SEEK_POINTS = _seek_points_seed()


@FUZZ
@given(st.one_of(mutated(SEEK_POINTS), st.binary(max_size=400)), st.integers(0, 470_000))
def test_fuzz_seek_point_files(tmp_path_factory, content, offset):
    """A damaged seek-point file is refused (SeekPointsDamaged), never decoded into
    wrong bytes: every byte that comes out equals what gzip decodes."""
    executions["gzip seek points"] += 1
    path = tmp_path_factory.mktemp("sp") / "x.seekpoints"
    path.write_bytes(content)
    try:
        points = read_seek_points(path)
        reader = open_at_checkpoint(io.BytesIO(GZ_DATA), points, offset, offset + 5000)  # type: ignore[arg-type]
        got = reader.read(5000)
    except (SeekPointsDamaged, *DECODE_ERRORS):
        return
    assert got == DECODED[offset : offset + 5000]


DECODED = gzip.decompress(GZ_DATA)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_format_detection(head):
    executions["format detection"] += 1
    assert detect(head) is None or isinstance(detect(head), Format)


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_member_names(name):
    executions["member names"] += 1
    cleaned = clean_path(name)
    if cleaned is not None:
        parts = cleaned.split("/")
        assert cleaned and ".." not in parts and "" not in parts and "\0" not in cleaned
        assert all(len(p.encode()) <= 255 for p in parts)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "artifacts",
                    "key",
                    "bucket",
                    "qualified",
                    "url",
                    "unpack",
                    "mutable",
                    "credentials",
                    "aws",
                    "experiment",
                    "access_key",
                    "secret_access_key",
                    "workspace",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@FUZZ
@given(JSON)
def test_fuzz_experiment_json(doc):
    executions["experiment JSON"] += 1
    try:
        exp = parse_experiment(doc, "default-bucket")
    except ConfigError:
        return
    for spec in exp.artifacts:
        assert spec.tag and "/" not in spec.tag
        assert spec.url or (spec.bucket and spec.key)


@FUZZ
@given(st.one_of(JSON.map(lambda d: yaml.safe_dump({"storage": d, "env": d})),
                 st.text(max_size=300)))  # fmt: skip
def test_fuzz_studioml_config(tmp_path_factory, text):
    executions["StudioML config"] += 1
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_text(text)
    with contextlib.suppress(ConfigError):
        load_config(path)
