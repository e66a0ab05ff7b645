"""Figures of a mount, and sizes, written for a human."""

from __future__ import annotations

from typing import Any


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return ">30 s"
    return f"{seconds * 1000:g} ms"


def format_figures(f: dict[str, Any]) -> str:
    c = f["counters"]
    cache = f.get("cache", {})
    served = c["hot_hits"] + c["disk_hits"] + c["misses"]
    ratio = f"{100 * (c['hot_hits'] + c['disk_hits']) / served:.1f} %" if served else "-"
    lat = f["get_latency"]
    lines = [
        f"mount      {f.get('mountpoint', '?')}  ({f.get('source', '?')}, pid {f.get('pid', '?')}, "
        f"up {f['uptime_seconds']:.0f} s)",
        f"cache      {human_size(cache.get('bytes', 0))} in {cache.get('blocks', 0)} blocks "
        f"of {human_size(cache.get('limit_bytes', 0))}; {cache.get('evicted_blocks', 0)} evicted, "
        f"{cache.get('corrupt_blocks', 0)} corrupt, {cache.get('write_failures', 0)} write "
        f"failures; dir {f.get('cache_dir', '?')}",
        f"blocks     {served} read: {c['hot_hits']} from memory, {c['disk_hits']} from disk, "
        f"{c['misses']} fetched (hit ratio {ratio})",
        f"store      {c['gets']} GETs, {human_size(c['bytes_fetched'])}, "
        f"p50 <= {_ms(lat['p50_le'])}, p99 <= {_ms(lat['p99_le'])}; {c['heads']} HEADs, "
        f"{c['lists']} LISTs, {c['retries']} retries",
        f"read-ahead {human_size(c['readahead_bytes'])} fetched, "
        f"{human_size(c['readahead_used_bytes'])} used, "
        f"{human_size(c['readahead_wasted_bytes'])} wasted",
        f"archives   {c['indexes_built']} indexes built, {c['indexes_loaded']} loaded "
        f"({c['sidecars_used']} from sidecars), {c['redecodes']} re-decodes",
    ]
    errors = f.get("store_errors") or {}
    if errors:
        lines.append("errors     " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    ops = f.get("fuse") or {}
    if ops:
        lines.append("operations " + ", ".join(
            f"{op} {o['count']} (p99 <= {_ms(o['p99_le'])}"
            + (f", {o['errors']} errors)" if o["errors"] else ")")
            for op, o in sorted(ops.items(), key=lambda kv: -kv[1]["count"])
        ))  # fmt: skip
    return "\n".join(lines)
