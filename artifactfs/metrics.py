"""Counters of what the daemon did, kept in one place.

Plain integers updated from the trio thread; the Prometheus endpoint and
`artifactfs stat` (see docs) read them. Keeping them dependency-free lets
the filesystem model count without importing an exporter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Metrics:
    hot_hits: int = 0  # block served from memory
    disk_hits: int = 0  # block served from the on-disk cache
    misses: int = 0  # block fetched from the store
    gets: int = 0  # ranged GETs issued
    bytes_fetched: int = 0
    fetch_errors: int = 0
    stale_reads: int = 0
    prefetch_started: int = 0
    prefetch_used: int = 0
    cache_writes_skipped: int = 0  # disk slower than the network: served uncached
    indexes_built: int = 0
    indexes_loaded: int = 0
    sidecars_used: int = 0
    redecodes: int = 0  # decoded blocks made again by decoding from the start
    lists: int = 0
    heads: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
