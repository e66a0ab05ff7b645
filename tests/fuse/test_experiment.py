"""The experiment view: one directory per artifact tag, over a real S3 server and mount."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from artifactfs.studio_seed import WORKSPACE, seed_studioml

pytestmark = pytest.mark.fuse


@pytest.fixture
def experiment(s3, tmp_path):
    artifacts = s3.bucket_dir("studioml-artifacts")
    earlier = seed_studioml(artifacts, s3.bucket_dir("studioml-meta"), key="exp0")
    exp = seed_studioml(artifacts, s3.bucket_dir("studioml-meta"), key="exp1")
    # a model directory reused from an earlier experiment, as `studio run --reuse` records it
    exp["artifacts"]["pretrained"] = dict(earlier["artifacts"]["modeldir"])
    # a dataset reused from another experiment's bucket
    other = s3.bucket_dir("shared-data")
    with tarfile.open(other / "data.tar", "w") as tar:
        info = tarfile.TarInfo("rows.csv")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"a,b\n1\n"))
    exp["artifacts"]["shared"] = {"key": "data.tar", "bucket": "shared-data", "unpack": True,
                                  "mutable": False}  # fmt: skip
    exp["artifacts"]["raw"] = {"key": exp["artifacts"]["modeldir"]["key"],
                               "bucket": "studioml-artifacts", "unpack": False}  # fmt: skip
    exp["artifacts"]["later"] = {"key": "experiments/exp1/later.tar",
                                 "bucket": "studioml-artifacts", "mutable": True}  # fmt: skip
    exp["artifacts"]["broken"] = {"bucket": "studioml-artifacts"}  # no key
    path = tmp_path / "exp1.json"
    path.write_text(json.dumps({"experiment": exp, "config": {}}))  # a runner's queue message
    return path, exp


def test_experiment_view_shows_one_directory_per_artifact(s3, mount, experiment):
    path, _ = experiment
    m = mount("", "--experiment-file", str(path), server=s3)
    tags = sorted(os.listdir(m.path))
    assert tags == sorted(["workspace", "data", "modeldir", "output", "_metrics", "_metadata",
                           "tb", "shared", "raw", "later", "pretrained"])  # fmt: skip
    # unpacked archives show their members
    assert (m.path / "workspace" / "train.py").read_text() == WORKSPACE["train.py"]
    assert (m.path / "workspace" / "lib" / "model.py").read_text() == WORKSPACE["lib/model.py"]
    assert (m.path / "output" / "output.log").read_text().startswith("epoch 1")
    assert (m.path / "shared" / "rows.csv").read_bytes() == b"a,b\n1\n"  # another bucket
    reused = s3.bucket_dir("studioml-artifacts") / "experiments/exp0/modeldir.tar"
    with tarfile.open(reused) as tar:  # exp0's model, not exp1's
        checkpoint = tar.extractfile(tar.getmember("checkpoint.bin")).read()
    assert (m.path / "pretrained" / "checkpoint.bin").read_bytes() == checkpoint
    assert checkpoint != (m.path / "modeldir" / "checkpoint.bin").read_bytes()
    # unpack: false -> <tag>/<basename of the key>
    assert os.listdir(m.path / "raw") == ["modeldir.tar"]
    with tarfile.open(m.path / "raw" / "modeldir.tar") as tar:
        assert "checkpoint.bin" in tar.getnames()
    # a mutable artifact not uploaded yet: an empty directory, said once in the log
    assert os.listdir(m.path / "later") == []
    log = m.log()
    assert log.count("artifact later:") == 1
    assert "artifact 'broken' skipped" in log


def test_a_missing_artifact_appears_once_uploaded(s3, mount, experiment):
    path, _ = experiment
    m = mount("", "--experiment-file", str(path), "--metadata-ttl", "0", server=s3)
    assert os.listdir(m.path / "later") == []
    with tarfile.open(s3.bucket_dir("studioml-artifacts") / "experiments/exp1/later.tar", "w") as t:
        info = tarfile.TarInfo("result.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"ok"))
    assert (m.path / "later" / "result.txt").read_bytes() == b"ok"


def test_bad_experiment_file_fails_with_one_line(s3, tmp_path):
    import subprocess

    from tests.support import CLI

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    (tmp_path / "mnt").mkdir()
    proc = subprocess.run([*CLI, "mount", "--experiment-file", str(bad), str(tmp_path / "mnt")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "bad.json" in proc.stderr


def _config(tmp_path, s3, secret_ref="$STUDIO_SECRET"):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "database:\n  type: s3\n  endpoint: " + s3.endpoint_url + "\n  bucket: studioml-meta\n"
        "  credentials:\n    aws:\n      access_key: " + s3.access_key + "\n"
        "      secret_access_key: " + secret_ref + "\n      region: us-east-1\n"
        "storage:\n  type: s3\n  endpoint: " + s3.endpoint_url + "\n"
        "  bucket: studioml-artifacts\n  credentials:\n    aws:\n"
        "      access_key: " + s3.access_key + "\n      secret_access_key: " + secret_ref + "\n"
        "      region: us-east-1\nenv:\n  AWS_DEFAULT_REGION: us-east-1\n"
    )
    return cfg


def _clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def test_runner_mounts_an_experiment_by_key_with_config_credentials(s3, mount, tmp_path):
    seed_studioml(s3.bucket_dir("studioml-artifacts"), s3.bucket_dir("studioml-meta"), "exp1")
    cfg = _config(tmp_path, s3)
    env = _clean_env(tmp_path, STUDIO_SECRET=s3.secret_key)  # only in the config's $VAR
    m = mount("", "--experiment", "exp1", "--config", str(cfg), "--debug", env=env)
    assert "workspace" in os.listdir(m.path)
    assert (m.path / "workspace" / "train.py").read_text() == WORKSPACE["train.py"]
    assert s3.secret_key not in m.log()
    with open(f"/proc/{m.pid}/cmdline", "rb") as f:
        assert s3.secret_key.encode() not in f.read()


def test_missing_experiment_or_bad_config_fails_with_one_line(s3, mount, tmp_path):
    s3.bucket_dir("studioml-artifacts")
    s3.bucket_dir("studioml-meta")
    cfg = _config(tmp_path, s3)
    env = _clean_env(tmp_path, STUDIO_SECRET=s3.secret_key)
    m = mount("", "--experiment", "nope", "--config", str(cfg), env=env, start=False)
    proc = m.start(check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "experiment nope not found" in proc.stderr
    assert s3.secret_key not in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: [unclosed")
    m2 = mount("", "--experiment", "x", "--config", str(bad), env=env, start=False,
               name="mnt2", cache="cache2")  # fmt: skip
    proc = m2.start(check=False)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr


def test_immutable_artifacts_are_not_revalidated_mutable_ones_are(s3, mount, experiment):
    path, exp = experiment
    m = mount("", "--experiment-file", str(path), "--metadata-ttl", "0.2", server=s3)
    ws_key = exp["artifacts"]["workspace"]["key"]
    out_key = exp["artifacts"]["output"]["key"]

    def heads(key):
        return sum(1 for r in s3.requests("HEAD OBJECT") if r.endswith(key.rpartition("/")[2]))

    os.listdir(m.path)
    before = heads(ws_key), heads(out_key)
    for _ in range(3):
        import time

        time.sleep(0.3)
        os.listdir(m.path)
        (m.path / "output" / "output.log").read_bytes()
    assert heads(ws_key) == before[0]  # content-addressed: never asked again
    assert heads(out_key) > before[1]  # mutable: revalidated after the TTL


def test_artifacts_with_their_own_endpoint_and_credentials(s3, mount, experiment, tmp_path):
    """Two real servers with different keys in one mount; a refused artifact fails alone."""
    import errno

    from artifactfs.devserver import S3Server

    path, exp = experiment
    other = S3Server(tmp_path / "s3-other", tmp_path / "rclone-other.log")
    with tarfile.open(other.bucket_dir("elsewhere") / "model.tar", "w") as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"wxyz"))
    with other:
        host = f"127.0.0.1:{other.port}"
        exp["artifacts"]["foreign"] = {
            "qualified": f"s3://{host}/elsewhere/model.tar", "unpack": True,
            "credentials": {"aws": {"access_key": other.access_key,
                                    "secret_access_key": other.secret_key,
                                    "region": "us-east-1"}},
        }  # fmt: skip
        exp["artifacts"]["refused"] = {
            "qualified": f"s3://{host}/elsewhere/model.tar", "unpack": True,
            "credentials": {"aws": {"access_key": other.access_key,
                                    "secret_access_key": "not-the-secret-000000000",
                                    "region": "us-east-1"}},
        }  # fmt: skip
        path.write_text(json.dumps(exp))
        m = mount("", "--experiment-file", str(path), "--debug", server=s3)
        assert "foreign" in os.listdir(m.path) and "workspace" in os.listdir(m.path)
        assert (m.path / "foreign" / "weights.bin").read_bytes() == b"wxyz"
        assert (m.path / "workspace" / "train.py").read_text() == WORKSPACE["train.py"]
        with pytest.raises(OSError) as err:
            os.listdir(m.path / "refused")
        assert err.value.errno == errno.EACCES
        log = m.log()
        assert "artifact refused:" in log and "elsewhere/model.tar" in log
        for secret in (other.secret_key, s3.secret_key, "not-the-secret-000000000"):
            assert secret not in log


def test_url_artifacts_are_read_with_ranged_http_gets(s3, mount, experiment, tmp_path):
    import subprocess

    from artifactfs.devserver import find_rclone, free_port
    from artifactfs.processes import stop_process
    from tests.support import wait_until

    path, exp = experiment
    web = tmp_path / "web"
    web.mkdir()
    data = os.urandom(3 * (1 << 20) + 5)
    (web / "weights.bin").write_bytes(data)
    port = free_port()
    server = subprocess.Popen([find_rclone(), "serve", "http", str(web), "--addr",
                               f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=10)
        url = f"http://127.0.0.1:{port}/weights.bin?X-Amz-Signature=presignedsecret123"
        exp["artifacts"]["pretrained"] = {"url": url, "unpack": False}
        path.write_text(json.dumps(exp))
        m = mount("", "--experiment-file", str(path), "--debug", server=s3)
        assert os.listdir(m.path / "pretrained") == ["weights.bin"]
        served = m.path / "pretrained" / "weights.bin"
        assert served.stat().st_size == len(data)
        with open(served, "rb") as f:
            f.seek(2 * (1 << 20))
            assert f.read(100) == data[2 * (1 << 20) : 2 * (1 << 20) + 100]
        assert served.read_bytes() == data
        assert "presignedsecret123" not in m.log()
    finally:
        stop_process(server)
