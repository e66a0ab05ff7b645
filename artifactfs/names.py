"""Which names a directory may show: the kernel's limits, applied to keys.

S3 keys may hold anything; a POSIX name may not be empty, `.` or `..`, hold
`/` or NUL, or exceed 255 bytes. Keys that would need such a name are not
shown (and logged once at debug level), never mangled into a look-alike.
"""

from __future__ import annotations

import os

NAME_MAX = 255


def is_valid_name(name: str) -> bool:
    if name in ("", ".", ".."):
        return False
    if "/" in name or "\0" in name:
        return False
    return len(os.fsencode(name)) <= NAME_MAX
