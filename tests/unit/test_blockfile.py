import os

import pytest

from artifactfs.cache import blockfile

DIGEST = bytes(range(32))


def _file(blockno, data):
    return b"".join(blockfile.pieces(DIGEST, blockno, data))


def test_roundtrip_and_page_aligned_layout():
    data = os.urandom(10_000)
    raw = _file(7, data)
    assert len(raw) == blockfile.file_size(len(data)) == 4096 + 12288
    assert raw[blockfile.DATA_OFFSET : blockfile.DATA_OFFSET + 10_000] == data
    assert blockfile.decode(raw, DIGEST, 7, len(data)) == data


@pytest.mark.parametrize("where", ["header", "data", "truncate", "extend"])
def test_damage_is_detected(where):
    data = os.urandom(4096)
    raw = bytearray(_file(1, data))
    if where == "header":
        raw[0] ^= 0xFF
    elif where == "data":
        raw[blockfile.DATA_OFFSET + 100] ^= 0x01
    elif where == "truncate":
        del raw[-1]
    else:
        raw += b"x"
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(bytes(raw), DIGEST, 1, len(data))


def test_a_block_of_another_version_or_number_is_refused():
    data = b"abc" * 100
    raw = _file(1, data)
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(raw, bytes(32), 1, len(data))
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(raw, DIGEST, 2, len(data))
