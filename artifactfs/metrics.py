"""What the daemon did, kept in one place.

Plain integers and small histograms updated from the trio thread. The
Prometheus endpoint (exporter.py), `artifactfs stat` (control.py) and the
figures logged at unmount and on SIGUSR1 all read `figures()`. Keeping this
module dependency-free lets the filesystem model count without importing an
exporter, and the model's tests check counters without a scrape.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Seconds: from a hot block (tens of microseconds) to a stalled store (tens of seconds).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(slots=True)
class Histogram:
    """Cumulative-bucket histogram in the Prometheus sense."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (None with no observation)."""
        if not self.count:
            return None
        rank, running = q * self.count, 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            if running >= rank:
                return bound
        return float("inf")

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "sum_seconds": round(self.total, 6),
                "p50_le": self.quantile(0.5), "p99_le": self.quantile(0.99),
                "buckets": self.cumulative()}  # fmt: skip


@dataclass(slots=True)
class Metrics:
    hot_hits: int = 0  # block served from memory
    disk_hits: int = 0  # block served from the on-disk cache
    misses: int = 0  # block fetched from the store (or decoded)
    gets: int = 0  # ranged GETs issued
    bytes_fetched: int = 0
    fetch_errors: int = 0
    stale_reads: int = 0
    retries: int = 0  # store requests sent again (botocore's and ours)
    prefetch_started: int = 0
    prefetch_used: int = 0
    readahead_bytes: int = 0  # fetched ahead of a sequential reader
    readahead_used_bytes: int = 0  # ... and then read
    readahead_wasted_bytes: int = 0  # ... and dropped from memory unread
    cache_writes_skipped: int = 0  # disk slower than the network: served uncached
    indexes_built: int = 0
    indexes_loaded: int = 0
    sidecars_used: int = 0
    redecodes: int = 0  # decoded blocks made again by decoding from the start
    lists: int = 0
    heads: int = 0
    get_latency: Histogram = field(default_factory=Histogram)
    store_errors: Counter[str] = field(default_factory=Counter)  # by error kind
    fuse_ops: Counter[str] = field(default_factory=Counter)
    fuse_errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (op, errno name)
    fuse_latency: dict[str, Histogram] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def observe_fuse(self, op: str, seconds: float) -> None:
        self.fuse_ops[op] += 1
        hist = self.fuse_latency.get(op)
        if hist is None:
            hist = self.fuse_latency[op] = Histogram()
        hist.observe(seconds)

    def count_fuse_error(self, op: str, code: int) -> None:
        self.fuse_errors[(op, errno.errorcode.get(code, str(code)))] += 1

    def snapshot(self) -> dict[str, int]:
        """The plain counters (one line in the log at unmount)."""
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if isinstance(getattr(self, name), int)
        }


def figures(metrics: Metrics, cache: Any | None = None, **about: Any) -> dict[str, Any]:
    """Everything one would want to know about a live mount, JSON-ready.

    `cache` is the BlockCache (its stats() is read); `about` adds identity
    fields (mount point, source, pid, version).
    """
    out: dict[str, Any] = dict(about)
    out["uptime_seconds"] = round(time.time() - metrics.started, 1)
    out["counters"] = metrics.snapshot()
    if cache is not None:
        s = cache.stats()
        out["cache"] = {"blocks": s.blocks, "bytes": s.bytes, "limit_bytes": s.limit,
                        "evicted_blocks": s.evicted_blocks, "corrupt_blocks": s.corrupt_blocks,
                        "write_failures": s.write_failures}  # fmt: skip
    out["get_latency"] = metrics.get_latency.summary()
    out["store_errors"] = dict(metrics.store_errors)
    out["fuse"] = {
        op: {
            "count": metrics.fuse_ops[op],
            "errors": sum(n for (o, _), n in metrics.fuse_errors.items() if o == op),
            **hist.summary(),
        }
        for op, hist in sorted(metrics.fuse_latency.items())
    }
    out["fuse_errors"] = {f"{op}:{code}": n for (op, code), n in metrics.fuse_errors.items()}
    return out
