"""Keep the daemon's resident memory close to the blocks it really holds.

glibc gives every thread that allocates its own malloc arena; block buffers
(8 MiB each) allocated by boto3's worker threads then stay cached in up to
8 x cores arenas, and the daemon's RSS drifts far above its block budget.
Two arenas keep that reuse in one place (measured: peak RSS during a cold
1 GiB read 350 -> 265 MiB). The mmap threshold is left dynamic: fixing it
returns buffers to the kernel at once but costs a page fault per 4 KiB on
every new block, which halved sequential throughput here.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8


def tame_malloc(arenas: int = 2) -> bool:
    """Limit glibc's malloc arenas; False where that is not possible (not glibc)."""
    try:  # the process's own symbols include libc's: no library search (ldconfig) needed
        ok = bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas) == 1)
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    log.debug("malloc: %d arenas (%s)", arenas, "set" if ok else "refused")
    return ok
