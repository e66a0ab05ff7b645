"""Helpers for the fault, load and fuzz cases: verifiable content and a report.

Content that encodes its version and offset in every 8-byte word lets any
reader check any byte it got, and proves that no read mixes two versions.
`record()` appends a case's figures to $ARTIFACTFS_REPORT_DIR (set by
`make faults`), from which docs/RELIABILITY.md's table is made.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

WORD = 8


def pattern(version: int, size: int, start: int = 0) -> bytes:
    """Bytes [start, start+size) of the object `version`: word i holds (version, i)."""
    first, last = start // WORD, (start + size + WORD - 1) // WORD
    words = struct.pack(f"<{last - first}Q", *((version << 40) | i for i in range(first, last)))
    skip = start - first * WORD
    return words[skip : skip + size]


def versions_in(data: bytes, start: int) -> set[int]:
    """The versions the words of `data` (read at `start`) claim; raises if an offset is wrong."""
    skip = (-start) % WORD
    body = data[skip : skip + (len(data) - skip) // WORD * WORD]
    first = (start + skip) // WORD
    found = set()
    for i, (word,) in enumerate(struct.iter_unpack("<Q", body)):
        if word & ((1 << 40) - 1) != first + i:
            raise AssertionError(f"word at byte {start + skip + i * WORD} holds the wrong offset")
        found.add(word >> 40)
    return found


def scale() -> float:
    """1 in `make test`; larger in `make faults` (longer runs, more examples)."""
    return float(os.environ.get("ARTIFACTFS_SOAK", "1"))


def record(case: str, **figures: Any) -> None:
    directory = os.environ.get("ARTIFACTFS_REPORT_DIR")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    with open(Path(directory) / "cases.jsonl", "a") as f:
        f.write(json.dumps({"case": case, "time": time.time(), **figures}) + "\n")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
