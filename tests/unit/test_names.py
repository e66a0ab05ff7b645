import pytest

from artifactfs.names import is_valid_name


@pytest.mark.parametrize("name", ["a", "file.tar.gz", "é", "x" * 255, "with space", "-"])
def test_valid(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b", "x" * 256, "é" * 128])
def test_invalid(name):
    assert not is_valid_name(name)
