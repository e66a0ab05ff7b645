"""Prometheus metrics of one mount (`--metrics-address`), read at scrape time.

A custom collector turns the daemon's plain counters (metrics.py) and the
block cache's figures into metric families, so the filesystem never calls
prometheus-client on its hot path and a scrape always sees current values.
The HTTP server is prometheus-client's own, in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from artifactfs.metrics import Histogram, Metrics
from artifactfs.options import parse_address

log = logging.getLogger(__name__)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"artifactfs_{name}", doc, value=value)


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"artifactfs_{name}", doc, labels=labels)


def _add(family: HistogramMetricFamily, values: list[str], hist: Histogram) -> None:
    family.add_metric(values, hist.cumulative(), sum_value=hist.total)


class MountCollector:
    def __init__(self, metrics: Metrics, cache: Any, info: dict[str, str]):
        self.metrics = metrics
        self.cache = cache
        self.info = info

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        info = GaugeMetricFamily("artifactfs_info", "The mount this daemon serves",
                                 labels=sorted(self.info))  # fmt: skip
        info.add_metric([self.info[k] for k in sorted(self.info)], 1)
        yield info

        hits = CounterMetricFamily("artifactfs_cache_hits", "Blocks served without a fetch",
                                   labels=["tier"])  # fmt: skip
        hits.add_metric(["memory"], m.hot_hits)
        hits.add_metric(["disk"], m.disk_hits)
        yield hits
        yield _counter("cache_misses", "Blocks fetched from the store or decoded", m.misses)
        s = self.cache.stats()
        yield _counter("cache_evictions", "Blocks evicted to keep the size limit",
                       s.evicted_blocks)  # fmt: skip
        yield GaugeMetricFamily("artifactfs_cache_bytes", "Bytes in the block cache", value=s.bytes)
        yield GaugeMetricFamily("artifactfs_cache_blocks", "Blocks in the block cache",
                                value=s.blocks)  # fmt: skip
        yield GaugeMetricFamily("artifactfs_cache_limit_bytes", "Size limit of the block cache",
                                value=s.limit)  # fmt: skip
        yield _counter("cache_corrupt_blocks", "Cached blocks that failed verification",
                       s.corrupt_blocks)  # fmt: skip
        yield _counter("cache_write_failures", "Blocks that could not be written (disk full...)",
                       s.write_failures)  # fmt: skip
        yield _counter("cache_writes_skipped", "Blocks served uncached: the disk lagged behind",
                       m.cache_writes_skipped)  # fmt: skip

        yield _counter("store_gets", "Ranged GETs sent to the object store", m.gets)
        yield _counter("store_bytes_fetched", "Bytes received from the object store",
                       m.bytes_fetched)  # fmt: skip
        yield _counter("store_heads", "Object metadata requests", m.heads)
        yield _counter("store_lists", "Listing requests", m.lists)
        yield _counter("store_retries", "Store requests sent again after a failure", m.retries)
        errors = CounterMetricFamily("artifactfs_store_errors", "Failed store requests by kind",
                                     labels=["kind"])  # fmt: skip
        for kind, n in sorted(m.store_errors.items()):
            errors.add_metric([kind], n)
        yield errors
        latency = _histogram("store_get_seconds", "Latency of ranged GETs", [])
        _add(latency, [], m.get_latency)
        yield latency
        yield _counter("stale_reads", "Reads refused because the object changed (ESTALE)",
                       m.stale_reads)  # fmt: skip

        ops = CounterMetricFamily("artifactfs_fuse_operations", "FUSE requests answered",
                                  labels=["op"])  # fmt: skip
        fuse_latency = _histogram("fuse_operation_seconds", "Time to answer a FUSE request",
                                  ["op"])  # fmt: skip
        for op, hist in sorted(m.fuse_latency.items()):
            ops.add_metric([op], m.fuse_ops[op])
            _add(fuse_latency, [op], hist)
        yield ops
        yield fuse_latency
        fuse_errors = CounterMetricFamily("artifactfs_fuse_errors", "FUSE requests answered "
                                          "with an error", labels=["op", "errno"])  # fmt: skip
        for (op, code), n in sorted(m.fuse_errors.items()):
            fuse_errors.add_metric([op, code], n)
        yield fuse_errors

        yield _counter("archive_indexes_built", "Archive indexes built by scanning",
                       m.indexes_built)  # fmt: skip
        yield _counter("archive_indexes_loaded", "Archive indexes reused from the cache or a "
                       "sidecar", m.indexes_loaded)  # fmt: skip
        yield _counter("archive_sidecars_used", "Shared index sidecars used", m.sidecars_used)
        yield _counter("archive_redecodes", "Decoded blocks made again from the start",
                       m.redecodes)  # fmt: skip
        ahead = CounterMetricFamily("artifactfs_readahead_bytes", "Read-ahead bytes by outcome",
                                    labels=["outcome"])  # fmt: skip
        ahead.add_metric(["fetched"], m.readahead_bytes)
        ahead.add_metric(["used"], m.readahead_used_bytes)
        ahead.add_metric(["wasted"], m.readahead_wasted_bytes)
        yield ahead


def serve(address: str, collector: MountCollector) -> Any:
    """Start the scrape endpoint; returns the server (call .shutdown() at unmount)."""
    host, port = parse_address(address)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics at http://%s/metrics", address)
    return server
