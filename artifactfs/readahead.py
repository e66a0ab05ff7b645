"""Sequential-read detection for one open file.

The kernel splits a sequential read into requests of at most 128 KiB-1 MiB
and may deliver a few of them out of order, so "sequential" means "starts
near where the last read ended". The window doubles while reads stay
sequential and collapses on a jump, so random readers never pay for
read-ahead.
"""

from __future__ import annotations


class SequentialDetector:
    def __init__(self, max_blocks: int, slack: int = 1 << 20):
        self.max_blocks = max_blocks
        self.slack = slack
        self._next_off = 0
        self._window = 0
        self.scheduled_until = 0  # first block not yet handed to read-ahead

    def observe(self, off: int, size: int) -> int:
        """Record a read; return how many blocks to fetch ahead of it."""
        if self.max_blocks > 0 and abs(off - self._next_off) <= self.slack:
            self._window = min(max(1, self._window * 2), self.max_blocks)
        else:
            self._window = 0
        self._next_off = max(self._next_off, off + size) if self._window else off + size
        return self._window
