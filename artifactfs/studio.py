"""StudioML experiments: the JSON the client writes, turned into artifact specs.

An experiment's `artifacts` map goes tag -> {key, bucket, qualified, mutable,
unpack, ...}. Entries that cannot be served (no key, a bad tag) are skipped
with one warning each; the others still mount. Credentials in the JSON are
never logged (see docs/SECURITY.md when it lands).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    key = entry.get("key")
    bucket = entry.get("bucket")
    qualified = entry.get("qualified")
    if isinstance(qualified, str) and qualified.startswith("s3://"):
        parts = urlsplit(qualified)
        path = parts.path.lstrip("/")
        if "/" in path:  # s3://host:port/bucket/key
            q_bucket, q_key = path.split("/", 1)
            bucket = bucket or q_bucket
            key = key or q_key
    bucket = bucket or default_bucket
    if not isinstance(key, str) or not key or not isinstance(bucket, str) or not bucket:
        log.warning("artifact %r skipped: no bucket and key to read it from", tag)
        return None
    return ArtifactSpec(tag, bucket, key.lstrip("/"), bool(entry.get("unpack", True)),
                        bool(entry.get("mutable", False)))  # fmt: skip
