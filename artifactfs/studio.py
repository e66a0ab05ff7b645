"""StudioML experiments: the JSON the client writes, turned into artifact specs.

An experiment's `artifacts` map goes tag -> {key, bucket, qualified, mutable,
unpack, ...}. Entries that cannot be served (no key, a bad tag) are skipped
with one warning each; the others still mount. Credentials in the JSON are
never logged (see docs/SECURITY.md when it lands).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from artifactfs.errors import ConfigError
from artifactfs.names import is_valid_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    tag: str
    bucket: str
    key: str
    unpack: bool
    mutable: bool
    endpoint: str | None = None  # from `qualified` (s3://host:port/bucket/key)
    credentials: StoreConfig | None = field(default=None, repr=False)  # the artifact's own
    url: str | None = field(default=None, repr=False)  # an http(s) artifact (may be presigned)

    @property
    def route(self) -> str:
        """Which store serves it: the bucket, plus the endpoint and credentials if its own."""
        if self.url is not None:
            return f"url#{hashlib.sha256(self.url.encode()).hexdigest()[:16]}"
        if self.endpoint is None and self.credentials is None:
            return self.bucket
        who = ""
        if self.credentials is not None:  # a digest: routes show up in labels, secrets never
            c = self.credentials
            secret = f"{c.access_key}\0{c.secret_key}\0{c.session_token}".encode()
            who = hashlib.sha256(secret).hexdigest()[:16]
        return f"{self.bucket}@{self.endpoint or ''}#{who}"


@dataclass(frozen=True, slots=True)
class Experiment:
    key: str
    artifacts: tuple[ArtifactSpec, ...]


def load_experiment_file(path: Path, default_bucket: str | None = None) -> Experiment:
    """A bare experiment JSON, or a runner's queue message {"experiment": ..., "config": ...}."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"experiment file {path}: {exc}") from None
    return parse_experiment(doc, default_bucket)


def parse_experiment(doc: Any, default_bucket: str | None = None) -> Experiment:
    if isinstance(doc, dict) and isinstance(doc.get("experiment"), dict):
        doc = doc["experiment"]
    if not isinstance(doc, dict) or not isinstance(doc.get("artifacts"), dict):
        raise ConfigError("not a StudioML experiment (no `artifacts` map)")
    key = str(doc.get("key", ""))
    specs = []
    for tag, entry in doc["artifacts"].items():
        spec = _artifact(str(tag), entry, default_bucket)
        if spec is not None:
            specs.append(spec)
    return Experiment(key, tuple(specs))


def _artifact(tag: str, entry: Any, default_bucket: str | None) -> ArtifactSpec | None:
    if not is_valid_name(tag):
        log.warning("artifact %r skipped: not a usable directory name", tag)
        return None
    if not isinstance(entry, dict):
        log.warning("artifact %r skipped: its entry is not a map", tag)
        return None
    url = entry.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        name = urlsplit(url).path.rstrip("/").rpartition("/")[2] or tag
        if not is_valid_name(name):
            name = tag
        return ArtifactSpec(tag, "", name, bool(entry.get("unpack", False)),
                            bool(entry.get("mutable", False)), url=url)  # fmt: skip
    key = entry.get("key")
    bucket = entry.get("bucket")
    qualified = entry.get("qualified")
    endpoint = None
    if isinstance(qualified, str) and qualified.startswith("s3://"):
        parts = urlsplit(qualified)
        path = parts.path.lstrip("/")
        if "/" in path:  # s3://host:port/bucket/key
            q_bucket, q_key = path.split("/", 1)
            bucket = bucket or q_bucket
            key = key or q_key
            if parts.netloc and parts.netloc != "ENDPOINT":
                scheme = "https" if parts.port == 443 else "http"
                endpoint = f"{scheme}://{parts.netloc}"
    bucket = bucket or default_bucket
    if not isinstance(key, str) or not key or not isinstance(bucket, str) or not bucket:
        log.warning("artifact %r skipped: no bucket and key to read it from", tag)
        return None
    creds = None
    aws = (
        (entry.get("credentials") or {}).get("aws")
        if isinstance(entry.get("credentials"), dict)
        else None
    )
    if isinstance(aws, dict) and aws.get("access_key") and aws.get("secret_access_key"):
        creds = StoreConfig(bucket, endpoint, aws.get("region"), str(aws["access_key"]),
                            str(aws["secret_access_key"]), aws.get("session_token"))  # fmt: skip
    return ArtifactSpec(tag, bucket, key.lstrip("/"), bool(entry.get("unpack", True)),
                        bool(entry.get("mutable", False)), endpoint, creds)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """One `database:` or `storage:` block of config.yaml. Secrets stay in here."""

    bucket: str = ""
    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_key and self.secret_key)


@dataclass(frozen=True, slots=True)
class StudioConfig:
    database: StoreConfig
    storage: StoreConfig


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _expand(value: Any, env: dict[str, str] | None = None) -> str | None:
    """`$VAR` / `${VAR}` from the config's `env:` block, then the environment, as the
    StudioML client does (it exports the block before reading the rest)."""
    if value is None:
        return None
    lookup = {**os.environ, **(env or {})}
    unset = False

    def sub(m: re.Match[str]) -> str:
        nonlocal unset
        name = m.group(1) or m.group(2)
        if name not in lookup:
            unset = True
            return ""
        return lookup[name]

    text = _VAR.sub(sub, str(value))
    return None if not text or unset else text  # an unset variable counts as unset


def _store(block: Any, env: dict[str, str]) -> StoreConfig:
    if not isinstance(block, dict):
        return StoreConfig()
    credentials = block.get("credentials")
    creds = credentials.get("aws") if isinstance(credentials, dict) else None
    if not isinstance(creds, dict):
        creds = {}
    access = _expand(creds.get("access_key"), env) or env.get("AWS_ACCESS_KEY_ID")
    secret = _expand(creds.get("secret_access_key"), env) or env.get("AWS_SECRET_ACCESS_KEY")
    return StoreConfig(
        bucket=str(block.get("bucket") or ""),
        endpoint=_expand(block.get("endpoint"), env),
        region=_expand(creds.get("region") or block.get("region"), env),
        access_key=access,
        secret_key=secret,
        session_token=_expand(creds.get("session_token"), env) or env.get("AWS_SESSION_TOKEN"),
    )


def load_config(path: Path) -> StudioConfig:
    """config.yaml as the StudioML client writes it: `database`, `storage`, `env`."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid YAML"
        raise ConfigError(f"config {path}: {reason}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config {path}: not a map of settings")
    env_block = doc.get("env") or {}
    env = (
        {str(k): v for k, v in ((k, _expand(v)) for k, v in env_block.items()) if v}
        if (isinstance(env_block, dict))
        else {}
    )
    storage = _store(doc.get("storage"), env)
    database = _store(doc.get("database"), env)
    if not database.bucket:
        database = StoreConfig("studioml-meta", database.endpoint or storage.endpoint,
                               database.region, database.access_key or storage.access_key,
                               database.secret_key or storage.secret_key,
                               database.session_token or storage.session_token)  # fmt: skip
    return StudioConfig(database, storage)
