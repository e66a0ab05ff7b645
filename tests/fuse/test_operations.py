"""Running it: metrics, `stat`, `ready`, cache tools, prefetch, logs, the fstab helper."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from artifactfs.devserver import free_port
from tests.support import CLI, is_mounted, wait_until

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value of every artifactfs sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"^(artifactfs_[^ ]+) ([^ ]+)$", line)
        if m:
            samples[m.group(1)] = float(m.group(2))
    return samples


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_metrics_endpoint_and_stat_count_what_happened(s3, bucket, mount):
    data = os.urandom(20 * MiB)  # three 8 MiB blocks
    (bucket / "big.bin").write_bytes(data)
    port = free_port()
    m = mount("s3://bkt", "--metrics-address", f"127.0.0.1:{port}", server=s3)
    before = scrape(port)
    assert before["artifactfs_store_gets_total"] == 0
    info = f'artifactfs_info{{mountpoint="{m.path}",source="s3://bkt/",version="0.1.0"}}'
    assert before[info] == 1

    assert (m.path / "big.bin").read_bytes() == data
    assert not (m.path / "missing").exists()
    gets = len(s3.requests("GET OBJECT"))
    assert wait_until(lambda: scrape(port)["artifactfs_cache_bytes"] >= 20 * MiB, 10)
    after = scrape(port)
    assert after["artifactfs_store_gets_total"] == gets == 3
    assert after["artifactfs_store_bytes_fetched_total"] == 20 * MiB
    assert after["artifactfs_cache_misses_total"] == 3
    assert after["artifactfs_cache_blocks"] == 3
    assert after["artifactfs_store_get_seconds_count"] == 3
    assert after['artifactfs_fuse_operations_total{op="read"}'] >= 20  # 1 MiB kernel requests
    assert after['artifactfs_fuse_errors_total{errno="ENOENT",op="lookup"}'] >= 1

    # read again: nothing fetched
    assert (m.path / "big.bin").read_bytes() == data
    assert scrape(port)["artifactfs_store_gets_total"] == 3

    # `artifactfs stat` sees the same figures, for scripts and for people
    figures = json.loads(run("stat", str(m.path), "--json").stdout)
    assert figures["counters"]["gets"] == 3 and figures["pid"] == m.pid
    assert figures["cache"]["bytes"] >= 20 * MiB
    human = run("stat", str(m.path)).stdout
    assert "3 GETs, 20.0 MiB" in human and "hit ratio" in human
    assert run("stat", str(m.path.parent)).returncode == 1  # not a mount

    # a new daemon on the same cache: every block a disk hit, no GET
    m.stop()
    port = free_port()
    m.args = ("--metrics-address", f"127.0.0.1:{port}")
    m.start()
    assert (m.path / "big.bin").read_bytes() == data
    warm = scrape(port)
    assert warm['artifactfs_cache_hits_total{tier="disk"}'] == 3
    assert warm["artifactfs_store_gets_total"] == 0


def test_ready_answers_only_for_a_live_artifactfs_mount(s3, bucket, mount, tmp_path):
    (bucket / "f").write_text("x")
    m = mount(server=s3)
    assert run("ready", str(m.path)).returncode == 0
    plain = run("ready", str(tmp_path))
    assert plain.returncode == 1 and "is not mounted" in plain.stderr
    os.kill(m.pid, signal.SIGKILL)  # a dead daemon: ENOTCONN
    assert wait_until(lambda: run("ready", str(m.path)).returncode == 1, 10)
    assert "Transport endpoint is not connected" in run("ready", str(m.path)).stderr


def test_recover_replaces_the_dead_mount_of_a_killed_daemon(s3, bucket, mount):
    (bucket / "f").write_text("x")
    m = mount(server=s3)
    os.kill(m.pid, signal.SIGKILL)
    assert wait_until(lambda: run("ready", str(m.path)).returncode == 1, 10)
    refused = m.start(check=False)
    assert refused.returncode == 1 and "--recover" in refused.stderr
    m.args = ("--recover",)
    m.start()
    assert (m.path / "f").read_text() == "x"
    assert "is a dead mount (its daemon died); detaching it" in m.log()


def test_cache_tools_refuse_a_live_cache_then_prune_and_clear(s3, bucket, mount):
    (bucket / "big.bin").write_bytes(os.urandom(20 * MiB))
    m = mount(server=s3)
    (m.path / "big.bin").read_bytes()
    assert wait_until(lambda: "3 blocks" in run("cache", "stats", str(m.cache_dir)).stdout, 10)
    stats = run("cache", "stats", str(m.cache_dir)).stdout
    assert f"in use by pid {m.pid}" in stats
    refused = run("cache", "clear", str(m.cache_dir))
    assert refused.returncode == 1 and f"in use by artifactfs pid {m.pid}" in refused.stderr
    m.stop()

    listing = json.loads(run("cache", "stats", str(m.cache_dir), "--json").stdout)
    assert listing[0]["blocks"] == 3 and listing[0]["in_use_by"] is None
    pruned = run("cache", "prune", str(m.cache_dir), "--to", "10M")
    assert pruned.returncode == 0 and "removed 2 files" in pruned.stdout
    assert "1 blocks" in run("cache", "stats", str(m.cache_dir)).stdout
    cleared = run("cache", "clear", str(m.cache_dir))
    assert cleared.returncode == 0 and "removed 1 files" in cleared.stdout

    gets = len(s3.requests("GET OBJECT"))
    m.start()
    (m.path / "big.bin").read_bytes()
    assert len(s3.requests("GET OBJECT")) == gets + 3  # nothing left: fetched again


def test_prefetch_warms_the_cache_so_the_job_reads_nothing_remote(s3, bucket, mount):
    data = bucket / "data"
    (data / "shards").mkdir(parents=True)
    for i in range(6):
        (data / "shards" / f"{i}.bin").write_bytes(os.urandom(3 * MiB + i))
    (data / "index.json").write_text("{}")
    m = mount(server=s3)
    done = run("prefetch", str(m.path), "data")
    assert done.returncode == 0, done.stderr
    assert re.search(r"prefetched 7 files, 18\.0 MiB in [\d.]+ s", done.stdout), done.stdout
    gets = len(s3.requests("GET OBJECT"))
    assert gets >= 7
    m.stop()  # a new daemon: only the disk cache can serve now
    m.start()
    for i in range(6):
        assert (m.path / "data" / "shards" / f"{i}.bin").read_bytes() == (
            data / "shards" / f"{i}.bin"
        ).read_bytes()
    assert len(s3.requests("GET OBJECT")) == gets
    outside = run("prefetch", str(m.path), "/etc")
    assert outside.returncode == 2 and "not inside" in outside.stderr


def test_json_logs_and_sigusr1_dump(s3, bucket, mount):
    (bucket / "f").write_text("x")
    m = mount("s3://bkt", "--log-format", "json", server=s3)
    assert (m.path / "f").read_text() == "x"
    os.kill(m.pid, signal.SIGUSR1)
    assert wait_until(lambda: "SIGUSR1: figures" in m.log(), 10)
    records = [json.loads(line) for line in m.log().splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(records[0])
    dump = [r["message"] for r in records if r["message"].startswith("SIGUSR1")]
    assert any("thread MainThread" in d for d in dump)
    figures = json.loads(next(d for d in dump if "figures" in d).split("figures ", 1)[1])
    assert figures["counters"]["gets"] == 1


def test_fstab_helper_mounts_as_mount8_calls_it(s3, bucket, tmp_path):
    """mount(8) runs `mount.fuse.artifactfs SOURCE DIR -o OPTIONS` for fuse.artifactfs."""
    (bucket / "f").write_text("from fstab")
    helper = os.path.join(os.path.dirname(sys.executable), "mount.fuse.artifactfs")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = (f"rw,_netdev,nofail,x-systemd.automount,allow_other,cache_dir={tmp_path / 'c'},"
               f"endpoint-url={s3.endpoint_url},cache-size=1G")  # fmt: skip
    env = {**os.environ, **s3.client_env()}
    try:
        done = subprocess.run([helper, "s3://bkt", str(mountpoint), "-o", options], env=env,
                              capture_output=True, text=True, timeout=90)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (mountpoint / "f").read_text() == "from fstab"
        with open("/proc/self/mounts") as f:
            line = next(ln for ln in f if ln.split()[1] == str(mountpoint))
        assert "allow_other" in line and line.split()[3].startswith("ro,")
    finally:
        run("umount", str(mountpoint))
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


def test_a_metrics_port_in_use_fails_the_mount_cleanly(s3, bucket, mount):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        m = mount("s3://bkt", "--metrics-address", f"127.0.0.1:{port}", server=s3, start=False)
        failed = m.start(check=False)
    assert failed.returncode == 1
    assert f"--metrics-address 127.0.0.1:{port}: Address already in use" in failed.stderr
    assert not is_mounted(m.path)
