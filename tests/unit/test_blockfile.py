import os

import pytest

from artifactfs.cache import blockfile

DIGEST = bytes(range(32))


def test_roundtrip():
    data = os.urandom(10_000)
    raw = blockfile.encode(DIGEST, 7, data) + data
    assert blockfile.decode(raw, DIGEST, 7, len(data)) == data


@pytest.mark.parametrize("where", ["header", "data", "truncate", "extend"])
def test_damage_is_detected(where):
    data = os.urandom(4096)
    raw = bytearray(blockfile.encode(DIGEST, 1, data) + data)
    if where == "header":
        raw[0] ^= 0xFF
    elif where == "data":
        raw[blockfile.HEADER_SIZE + 100] ^= 0x01
    elif where == "truncate":
        del raw[-1]
    else:
        raw += b"x"
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(bytes(raw), DIGEST, 1, len(data))


def test_a_block_of_another_version_or_number_is_refused():
    data = b"abc" * 100
    raw = blockfile.encode(DIGEST, 1, data) + data
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(raw, bytes(32), 1, len(data))
    with pytest.raises(blockfile.CorruptBlock):
        blockfile.decode(raw, DIGEST, 2, len(data))
