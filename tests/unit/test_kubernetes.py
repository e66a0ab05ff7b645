"""The Kubernetes manifests: valid against the API schemas, and saying what the guide says.

Every command they run is parsed by artifactfs's own argument parser, and
every probe runs `artifactfs ready`, the subcommand the mount tests exercise
(tests/fuse/test_operations.py::test_ready_answers_only_for_a_live_artifactfs_mount).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from artifactfs.cli import build_parser

kubernetes_validate = pytest.importorskip("kubernetes_validate")

MANIFESTS = sorted((Path(__file__).parents[2] / "docs" / "kubernetes").glob("*.yaml"))
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]  # native sidecars: 1.29+


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_specs(path: Path) -> list[dict]:
    specs = []
    for doc in documents(path):
        if doc["kind"] == "Pod":
            specs.append(doc["spec"])
        elif doc["kind"] in ("DaemonSet", "Deployment", "StatefulSet", "Job"):
            specs.append(doc["spec"]["template"]["spec"])
    return specs


def test_there_are_manifests_for_each_layout():
    names = {p.name for p in MANIFESTS}
    assert {"sidecar.yaml", "sidecar-irsa.yaml", "daemonset.yaml"} <= names


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_against_the_kubernetes_schemas(path, version):
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def _artifactfs_containers(spec: dict) -> list[dict]:
    every = spec.get("initContainers", []) + spec.get("containers", [])
    return [c for c in every if c.get("command", [""])[0] == "artifactfs"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_commands_parse_and_probes_use_artifactfs_ready(path):
    parser = build_parser()
    for spec in pod_specs(path):
        for c in _artifactfs_containers(spec):
            args, extras = parser.parse_known_args(c["command"][1:])
            assert args.command == "mount" and not [e for e in extras if e.startswith("-")]
            mountpoint = [*args.paths, *extras][-1]
            assert args.foreground  # the container's main process is the daemon
            for probe in ("startupProbe", "readinessProbe"):
                command = c[probe]["exec"]["command"]
                assert command[:3] == ["artifactfs", "ready", mountpoint]
                assert parser.parse_args(command[1:]).command == "ready"
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            assert mounts[mountpoint]["mountPropagation"] == "Bidirectional"
            assert c["securityContext"]["privileged"] is True


@pytest.mark.parametrize("path", [p for p in MANIFESTS if "sidecar" in p.name],
                         ids=lambda p: p.name)  # fmt: skip
def test_the_experiment_holds_no_secret_and_sees_the_mount_read_only(path):
    for spec in pod_specs(path):
        volumes = {v["name"]: v for v in spec["volumes"]}
        secret_volumes = {n for n, v in volumes.items() if "secret" in v}
        cache = volumes["cache"]["emptyDir"]
        assert cache.get("sizeLimit"), "the cache volume must be size-limited"
        for c in spec["containers"]:
            names = {m["name"] for m in c.get("volumeMounts", [])}
            assert not names & secret_volumes, "a secret reaches the experiment"
            assert not any(e["name"].startswith("AWS_") for e in c.get("env", []))
            artifacts = next(m for m in c["volumeMounts"] if m["mountPath"] == "/artifacts")
            assert artifacts["mountPropagation"] == "HostToContainer" and artifacts["readOnly"]
        if "irsa" in path.name:
            assert not secret_volumes  # no static key at all
            sidecar = _artifactfs_containers(spec)[0]
            assert not any(e["name"].startswith("AWS_ACCESS") for e in sidecar.get("env", []))
