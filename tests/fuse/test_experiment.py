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
    exp = seed_studioml(artifacts, s3.bucket_dir("studioml-meta"), key="exp1")
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
                           "tb", "shared", "raw", "later"])  # fmt: skip
    # unpacked archives show their members
    assert (m.path / "workspace" / "train.py").read_text() == WORKSPACE["train.py"]
    assert (m.path / "workspace" / "lib" / "model.py").read_text() == WORKSPACE["lib/model.py"]
    assert (m.path / "output" / "output.log").read_text().startswith("epoch 1")
    assert (m.path / "shared" / "rows.csv").read_bytes() == b"a,b\n1\n"  # another bucket
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
