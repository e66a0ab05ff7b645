import pytest

from artifactfs.errors import ConfigError
from artifactfs.options import MountOptions, Source, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("4096", 4096), ("4K", 4096), ("4M", 4 << 20), ("10G", 10 << 30),
     ("512MiB", 512 << 20), ("1.5G", int(1.5 * (1 << 30))), ("2t", 2 << 40)],
)  # fmt: skip
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "4X", "-1G", "1.2.3M"])
def test_parse_size_rejects(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_source_s3_with_and_without_prefix():
    assert Source.parse("s3://bkt") == Source("s3", "bkt", "")
    assert Source.parse("s3://bkt/") == Source("s3", "bkt", "")
    assert Source.parse("s3://bkt/a/b/") == Source("s3", "bkt", "a/b/")
    assert str(Source.parse("s3://bkt/a")) == "s3://bkt/a/"


def test_source_file():
    assert Source.parse("file:///srv/data/") == Source("file", "/srv/data", "")


@pytest.mark.parametrize(
    "text", ["bkt", "http://x/bkt", "s3://", "s3://key:secret@bkt", "file://host/dir"]
)
def test_source_rejects(text):
    with pytest.raises(ConfigError):
        Source.parse(text)


def test_endpoint_with_credentials_is_refused(tmp_path):
    opts = MountOptions(Source.parse("s3://b"), tmp_path, endpoint_url="http://AK:SK@host:9000")
    with pytest.raises(ConfigError, match="must not hold credentials"):
        opts.validate()


def test_cache_must_hold_blocks(tmp_path):
    opts = MountOptions(Source.parse("s3://b"), tmp_path, cache_size=1 << 20, block_size=1 << 20)
    with pytest.raises(ConfigError):
        opts.validate()
