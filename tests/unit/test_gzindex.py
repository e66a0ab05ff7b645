"""Seek points of a gzip stream: checksummed, loaded a few at a time."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import indexed_gzip
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactfs.archive.codecs import GZIP_READ_BUFFER, open_at_checkpoint, save_checkpoints
from artifactfs.archive.gzindex import SeekPointsDamaged, read_seek_points

SPACING = 256 << 10


class Corpus(tuple):
    def __repr__(self) -> str:  # hypothesis prints its arguments on failure
        return f"Corpus({len(self[0])} bytes decoded, {len(self[1])} compressed)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[bytes, bytes, Path]:
    """Mixed text and random data (points land unevenly), its gzip, and its seek points."""
    rnd = random.Random(7)
    parts = [rnd.randbytes(200_000) if i % 3 == 0 else b"line %d\n" % i * 20_000 for i in range(40)]
    data = b"".join(parts)
    compressed = gzip.compress(data, compresslevel=6)
    full = indexed_gzip.IndexedGzipFile(fileobj=io.BytesIO(compressed), spacing=SPACING)
    full.build_full_index()
    path = tmp_path_factory.mktemp("gz") / "x.seekpoints"
    assert save_checkpoints(full, path)
    return Corpus((data, compressed, path))


def test_point_table_matches_indexed_gzip(corpus):
    data, compressed, path = corpus
    points = read_seek_points(path)
    full = indexed_gzip.IndexedGzipFile(fileobj=io.BytesIO(compressed), spacing=SPACING)
    full.build_full_index()
    assert [(p.uncompressed, p.compressed) for p in points.points] == list(full.seek_points())
    assert len(points.points) > 10
    assert points.compressed_size == len(compressed) and points.uncompressed_size == len(data)
    assert not path.with_name(path.name + ".export").exists()  # the raw export is gone


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_few_seek_points_decode_what_gzip_does(corpus, draw):
    data, compressed, path = corpus
    points = read_seek_points(path)
    offset = draw.draw(st.integers(0, len(data) - 1))
    length = draw.draw(st.integers(1, 3 << 20))
    index = points.index_for(offset, offset + length)
    covering = length // SPACING + 3  # windows of the point before, those up to the end
    assert len(index) <= 64 + 18 * len(points.points) + covering * points.window_size
    reader = open_at_checkpoint(io.BytesIO(compressed), points, offset, offset + length)  # type: ignore[arg-type]
    assert reader.read(length) == data[offset : offset + length]

    # Only the compressed span it names is read: the rest may as well be zeros.
    lo, hi = points.compressed_span(offset, offset + length, GZIP_READ_BUFFER)
    masked = bytearray(len(compressed))
    masked[lo:hi] = compressed[lo:hi]
    reader = open_at_checkpoint(io.BytesIO(bytes(masked)), points, offset, offset + length)  # type: ignore[arg-type]
    assert reader.read(length) == data[offset : offset + length]


def _flip(b: bytes, at: int) -> bytes:
    return b[:at] + bytes([b[at] ^ 0x10]) + b[at + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"XXGZP01" + b[7:],  # not this module's file (an old or foreign one)
        lambda b: b[:40],  # cut in the header
        lambda b: b[:100],  # point table cut short
        lambda b: _flip(b, 60),  # a flipped bit in the point table
    ],
)
def test_damaged_point_tables_are_refused(corpus, tmp_path, damage):
    bad = tmp_path / "bad.seekpoints"
    bad.write_bytes(damage(corpus[2].read_bytes()))
    with pytest.raises(SeekPointsDamaged):
        read_seek_points(bad)


def test_a_flipped_bit_in_a_window_is_caught_before_decoding(corpus, tmp_path):
    data, compressed, path = corpus
    bad = tmp_path / "bad.seekpoints"
    raw = path.read_bytes()
    bad.write_bytes(_flip(raw, len(raw) - 100))  # inside the last window
    points = read_seek_points(bad)  # the table is intact
    offset = points.points[-1].uncompressed + 10
    with pytest.raises(SeekPointsDamaged):
        open_at_checkpoint(io.BytesIO(compressed), points, offset, offset + 10)  # type: ignore[arg-type]
    early = points.points[2].uncompressed  # other windows still serve
    reader = open_at_checkpoint(io.BytesIO(compressed), points, early, early + 1000)  # type: ignore[arg-type]
    assert reader.read(1000) == data[early : early + 1000]
    bad.unlink()  # a file removed under a loaded table is damage too, not a crash
    with pytest.raises(SeekPointsDamaged):
        open_at_checkpoint(io.BytesIO(compressed), points, early, early + 1000)  # type: ignore[arg-type]


def test_an_older_raw_export_is_converted_once(corpus, tmp_path):
    from artifactfs.archives import _load_seek_points

    data, compressed, _ = corpus
    full = indexed_gzip.IndexedGzipFile(fileobj=io.BytesIO(compressed), spacing=SPACING)
    full.build_full_index()
    full.export_index(str(tmp_path / "v.gzidx"))  # what artifactfs 0.1 kept
    points = _load_seek_points(tmp_path / "v.seekpoints")
    assert not (tmp_path / "v.gzidx").exists() and (tmp_path / "v.seekpoints").exists()
    offset = points.points[-2].uncompressed + 7
    reader = open_at_checkpoint(io.BytesIO(compressed), points, offset, offset + 999)  # type: ignore[arg-type]
    assert reader.read(999) == data[offset : offset + 999]
