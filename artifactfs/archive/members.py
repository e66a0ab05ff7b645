"""Member names from archives are hostile input: clean them or refuse them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Literal

from artifactfs.names import NAME_MAX

PATH_MAX = 4096
MemberKind = Literal["file", "dir", "symlink", "hardlink"]


@dataclass(slots=True)
class Member:
    """One entry of an archive as the index stores it."""

    path: str  # cleaned, relative, no trailing slash
    kind: MemberKind
    mode: int  # permission bits only
    size: int
    mtime_ns: int
    offset: int  # where the data starts in the (uncompressed) archive stream
    link: str = ""  # symlink target as stored; hardlink target as a cleaned path
    codec: str = ""  # "deflate": compressed on its own (zip); "sparse": `link` holds the map
    csize: int = 0  # with a codec: the compressed length at `offset`


def is_utf8(text: str) -> bool:
    """False for names decoded with surrogateescape from bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_path(name: str) -> str | None:
    """`./a/b/` -> `a/b`; None for names that must not be shown.

    Refused: NUL bytes, bytes that are not UTF-8 (the index stores text), a
    `..` component, a component over 255 bytes, a path over 4096 bytes, and
    the archive root itself. Leading `/` and `./` are stripped, as tar
    extraction does.
    """
    if "\0" in name or not is_utf8(name) or len(os.fsencode(name)) > PATH_MAX:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    if any(len(os.fsencode(p)) > NAME_MAX for p in parts):
        return None
    return "/".join(parts)


def sparse_segments(member: Member) -> list[tuple[int, int, int]]:
    """(offset in the file, length, offset in the packed data) of a sparse member's data."""
    out = []
    packed = 0
    for offset, length in json.loads(member.link):
        out.append((int(offset), int(length), packed))
        packed += int(length)
    return out
