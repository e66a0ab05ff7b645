"""Mount descriptions for systemd and /etc/fstab: `/etc/artifactfs/<name>.conf`.

One `key = value` per line; `#` starts a comment. `source` and `mountpoint`
say what to mount where; every other key is a long `mount` flag without its
dashes (`cache-size = 20G`, `allow-other = true`). `${VAR}` in a value is
taken from the environment, notably `${CREDENTIALS_DIRECTORY}` under systemd
(`config = ${CREDENTIALS_DIRECTORY}/studioml.yaml`). No key may hold a
secret: secrets travel in files (`LoadCredential=`), never in this file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from artifactfs.errors import ConfigError

_VAR = re.compile(r"\$\{(\w+)\}")
_REFUSED = {"access-key", "secret-key", "secret-access-key", "session-token", "password"}


def _expand(value: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise ConfigError(f"{where}: ${{{m.group(1)}}} is not set")
        return os.environ[m.group(1)]

    return _VAR.sub(sub, value)


def read_conf(path: Path, expand: bool = True) -> dict[str, str]:
    """The file's settings; `expand=False` leaves `${VAR}` as written (unmounting
    needs only the mount point, and runs after systemd removed the credentials)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    settings: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower().replace("_", "-"), value.strip().strip("'\"")
        where = f"{path}:{n}"
        if not sep or not key:
            raise ConfigError(f"{where}: expected `key = value`")
        if key in _REFUSED:
            raise ConfigError(f"{where}: secrets never go in this file (use LoadCredential=)")
        settings[key] = _expand(value, where) if expand else value
    if "mountpoint" not in settings:
        raise ConfigError(f"{path}: no `mountpoint = ...`")
    return settings


def conf_to_argv(path: Path) -> list[str]:
    """The `mount` arguments the file describes."""
    settings = read_conf(path)
    argv = [settings.pop("source")] if "source" in settings else []
    argv.append(settings.pop("mountpoint"))
    return argv + flags(settings)


def flags(settings: dict[str, str]) -> list[str]:
    """`{"cache-size": "20G", "allow-other": "true"}` -> `--cache-size 20G --allow-other`."""
    argv: list[str] = []
    for key, value in settings.items():
        if value.lower() in ("true", "yes", "on"):
            argv.append(f"--{key}")
        elif value.lower() not in ("false", "no", "off"):
            argv += [f"--{key}", value]
    return argv
