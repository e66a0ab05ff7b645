"""Mount options: parsed once from the command line, read everywhere else."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from artifactfs.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`10G`, `512MiB`, `4m`, `1048576` -> bytes (binary units, as du and df use)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"not a size: {text!r} (examples: 4M, 512MiB, 10G)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * 1024 ** " kmgtp".index(unit or " "))


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9108")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Source:
    """What is mounted: a bucket (and prefix) on S3, or a local directory."""

    scheme: str  # "s3" or "file"
    bucket: str  # bucket name, or the directory for file://
    prefix: str  # '' or ending in '/'

    @classmethod
    def parse(cls, text: str) -> Source:
        parts = urlsplit(text)
        if parts.scheme == "s3":
            if not parts.netloc:
                raise ConfigError(f"{text}: expected s3://BUCKET[/PREFIX]")
            if "@" in parts.netloc or ":" in parts.netloc:
                raise ConfigError(f"{text}: a bucket name; credentials never go in the URL")
            prefix = parts.path.strip("/")
            return cls("s3", parts.netloc, prefix + "/" if prefix else "")
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path:
                raise ConfigError(f"{text}: expected file:///ABSOLUTE/DIR")
            return cls("file", os.path.abspath(parts.path), "")
        raise ConfigError(f"{text}: the source must be s3://BUCKET[/PREFIX] or file:///DIR")

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.bucket}"
        return f"s3://{self.bucket}/{self.prefix}"


def default_cache_base() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/artifactfs")
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "artifactfs" if xdg else Path.home() / ".cache" / "artifactfs"


def default_cache_dir(source: Source, endpoint_url: str | None) -> Path:
    """One directory per source, so mounts of different buckets never share a lock."""
    ident = hashlib.sha256(f"{endpoint_url or ''}\0{source}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", source.bucket.strip("/"))[-40:] or "root"
    return default_cache_base() / f"{safe}-{ident}"


@dataclass(frozen=True, slots=True)
class MountOptions:
    source: Source
    mountpoint: Path
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool | None = None
    cache_dir: Path | None = None
    cache_size: int = 10 << 30
    block_size: int = 8 << 20
    read_ahead: int = 64 << 20
    memory_budget: int = 64 << 20
    kernel_read_ahead: int = 16 << 20
    max_background: int = 64
    metadata_ttl: float = 1.0
    negative_ttl: float = 1.0
    request_timeout: float = 30.0
    max_attempts: int = 3
    max_concurrency: int = 16
    allow_anonymous: bool = False
    metrics_address: str | None = None
    log_format: str = "text"  # text | json
    recover: bool = False  # detach a dead mount (ENOTCONN) at the mount point first
    fuse_fd: int | None = None  # mounted by `kernel-mount`, passed by systemd
    experiment_file: Path | None = None
    experiment_key: str | None = None
    config_file: Path | None = None
    archives: str = "unpack"  # unpack | raw | both
    max_decoded_size: int = 64 << 30
    publish_index: bool = False
    uid: int = -1
    gid: int = -1
    allow_other: bool = False
    debug: bool = False
    log_file: Path | None = None

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or default_cache_dir(self.source, self.endpoint_url)

    def validate(self) -> None:
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"--endpoint-url {self.endpoint_url}: expected http(s)://HOST[:PORT]"
                )
            if parts.username or parts.password:
                raise ConfigError("--endpoint-url must not hold credentials")
        if self.block_size < 64 << 10 or self.block_size > 64 << 20:
            raise ConfigError("--block-size must be between 64K and 64M")
        if self.cache_size < 4 * self.block_size:
            raise ConfigError("--cache-size must hold at least four blocks")
        if self.metrics_address:
            try:
                parse_address(self.metrics_address)
            except ValueError as exc:
                raise ConfigError(f"--metrics-address {exc}") from None
        if self.request_timeout <= 0 or self.max_attempts < 1:
            raise ConfigError("--request-timeout must be > 0 and --max-attempts >= 1")
