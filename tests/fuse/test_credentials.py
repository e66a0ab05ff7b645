"""Whose credentials sign which request, against servers that really check them.

moto_server enforces IAM users, roles, STS session tokens and policies; rclone
checks its one key pair. Every refusal here is the server's own.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import os
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from tests.faultproxy import FaultProxy
from tests.motoserver import ACCOUNT, MotoServer
from tests.support import assert_no_secret_exposed

pytestmark = pytest.mark.fuse


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS variable, no shared profile, no instance metadata: only what a test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    env.update(extra)
    return env


@pytest.fixture
def moto(tmp_path):
    with MotoServer(tmp_path / "moto.log") as server:
        yield server


def write_experiment(tmp_path: Path, artifacts: dict) -> Path:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"key": "exp1", "artifacts": artifacts}))
    return path


def test_allow_anonymous_reads_public_buckets_the_keys_are_refused_for(s3, moto, mount, tmp_path):
    """StudioML's policy: one private key set, plus public data read unsigned."""
    (s3.bucket_dir("bkt") / "ws.tar").write_bytes(tar_bytes({"train.py": b"print(1)\n"}))
    admin = moto.admin("s3")
    for name in ("open-data", "closed"):
        admin.create_bucket(Bucket=name)
    public = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::open-data/*"}]}  # fmt: skip
    admin.put_bucket_policy(Bucket="open-data", Policy=json.dumps(public))
    rows = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(10_000))
    # moto authorizes HEAD as s3:HeadObject, which no AWS policy can name: the ACL grants it
    admin.put_object(Bucket="open-data", Key="mnist.tar", ACL="public-read",
                     Body=tar_bytes({"rows.csv": rows}))  # fmt: skip
    admin.put_object(Bucket="closed", Key="private.bin", Body=b"not for you")

    with FaultProxy(moto.port, refuse_signed=True) as proxy:  # AWS, for MinIO keys
        where = f"s3://127.0.0.1:{proxy.port}"
        exp = write_experiment(tmp_path, {
            "workspace": {"bucket": "bkt", "key": "ws.tar", "unpack": True},
            "public": {"qualified": f"{where}/open-data/mnist.tar", "unpack": True},
            "closed": {"qualified": f"{where}/closed/private.bin", "unpack": False},
        })  # fmt: skip

        signed_only = mount("", "--experiment-file", str(exp), server=s3, name="signed")
        assert (signed_only.path / "workspace" / "train.py").read_bytes() == b"print(1)\n"
        with pytest.raises(PermissionError):
            os.listdir(signed_only.path / "public")
        assert "open-data" in signed_only.log() and "access denied" in signed_only.log()
        signed_only.stop()

        m = mount("", "--experiment-file", str(exp), "--allow-anonymous", server=s3,
                  name="anon", cache="cache-anon")  # fmt: skip
        assert (m.path / "workspace" / "train.py").read_bytes() == b"print(1)\n"  # signed
        assert (m.path / "public" / "rows.csv").read_bytes() == rows  # unsigned
        with pytest.raises(OSError) as refused:  # no policy makes it public: refused unsigned
            os.listdir(m.path / "closed")
        assert refused.value.errno == errno.EACCES
        assert proxy.counts["refused"] >= 1 and proxy.counts["passed"] >= 2
        assert m.log().count("reading it unsigned") == 1
        assert_no_secret_exposed(m, [s3.secret_key])


def test_per_artifact_session_credentials_override_the_configs(moto, mount, tmp_path):
    """An artifact's own STS credentials win; a tampered token or a refused key is EACCES."""
    admin = moto.admin("s3")
    for name in ("team-a", "team-b"):
        admin.create_bucket(Bucket=name)
    admin.put_object(Bucket="team-a", Key="ws.tar", Body=tar_bytes({"train.py": b"a\n"}))
    admin.put_object(Bucket="team-b", Key="model.tar", Body=tar_bytes({"w.bin": b"b" * 5000}))
    runner = moto.user_with_access("runner", ["team-a"])  # the config's keys: team-a only
    role = moto.role_with_access("reader-b", ["team-b"], {"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
    sts = moto.admin("sts").assume_role(RoleArn=role, RoleSessionName="exp1")["Credentials"]
    moto.enforce_auth()

    config = tmp_path / "config.yaml"
    config.write_text(
        "storage:\n"
        f"  endpoint: {moto.endpoint_url}\n"
        "  bucket: team-a\n"
        "  credentials:\n    aws:\n"
        "      access_key: $RUNNER_KEY\n      secret_access_key: $RUNNER_SECRET\n"
        "env:\n"
        f"  RUNNER_KEY: {runner['access_key']}\n  RUNNER_SECRET: {runner['secret_key']}\n"
    )
    own = {"access_key": sts["AccessKeyId"], "secret_access_key": sts["SecretAccessKey"],
           "session_token": sts["SessionToken"]}  # fmt: skip
    exp = write_experiment(tmp_path, {
        "workspace": {"bucket": "team-a", "key": "ws.tar"},
        "model": {"bucket": "team-b", "key": "model.tar", "credentials": {"aws": own}},
        "tampered": {"bucket": "team-b", "key": "model.tar",
                     "credentials": {"aws": {**own, "session_token": own["session_token"][::-1]}}},
        "denied": {"bucket": "team-b", "key": "model.tar"},  # the config's keys: refused
    })  # fmt: skip
    m = mount("", "--experiment-file", str(exp), "--config", str(config), "--debug",
              "--endpoint-url", moto.endpoint_url, env=clean_env(tmp_path))  # fmt: skip
    assert (m.path / "workspace" / "train.py").read_bytes() == b"a\n"
    assert (m.path / "model" / "w.bin").read_bytes() == b"b" * 5000
    for tag in ("tampered", "denied"):
        with pytest.raises(OSError) as refused:
            os.listdir(m.path / tag)
        assert refused.value.errno == errno.EACCES, tag
    log = m.log()
    assert "s3://team-b/model.tar: access denied" in log
    assert_no_secret_exposed(m, [runner["secret_key"], sts["SecretAccessKey"],
                                 sts["SessionToken"], own["session_token"][::-1]])  # fmt: skip


class CredentialsEndpoint:
    """The container credentials protocol (ECS, EKS Pod Identity) on loopback."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}
        self.served = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.served += 1
                body = json.dumps(endpoint.current).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/creds"

    def give(self, key: dict[str, str], valid_for: dt.timedelta) -> None:
        expiry = dt.datetime.now(dt.UTC) + valid_for
        self.current = {
            "AccessKeyId": key["access_key"],
            "SecretAccessKey": key["secret_key"],
            "Token": "",
            "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def __enter__(self) -> CredentialsEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_temporary_credentials_are_refreshed_without_a_remount(moto, mount, tmp_path):
    admin = moto.admin("s3")
    admin.create_bucket(Bucket="bkt")
    for name in ("a.txt", "b.txt"):
        admin.put_object(Bucket="bkt", Key=name, Body=name.encode())
    first = moto.user_with_access("runner", ["bkt"])
    moto.enforce_auth()
    with CredentialsEndpoint() as creds:
        # botocore refreshes credentials 15 minutes before they expire
        creds.give(first, dt.timedelta(minutes=15, seconds=4))
        env = clean_env(tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=creds.url)
        m = mount("s3://bkt", "--endpoint-url", moto.endpoint_url, env=env)
        assert (m.path / "a.txt").read_text() == "a.txt"

        # the issuer rotates: a new key is handed out, the old one dies once botocore
        # should have asked for the new one (inside the 15-minute window)
        second = moto.new_key("runner")
        creds.give(second, dt.timedelta(hours=1))
        served = creds.served
        time.sleep(5)
        moto.revoke_key("runner", first["access_key"])
        stale = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                             aws_access_key_id=first["access_key"],
                             aws_secret_access_key=first["secret_key"])  # fmt: skip
        with pytest.raises(botocore.exceptions.ClientError):  # the old key really is dead
            stale.head_object(Bucket="bkt", Key="b.txt")
        assert (m.path / "b.txt").read_text() == "b.txt"  # same mount, new key
        assert creds.served > served
        assert_no_secret_exposed(m, [first["secret_key"], second["secret_key"]])


def test_web_identity_credentials_as_on_eks_with_irsa(moto, mount, tmp_path):
    """No key anywhere: a projected service-account token and a role ARN, as EKS sets them."""
    admin = moto.admin("s3")
    admin.create_bucket(Bucket="bkt")
    admin.put_object(Bucket="bkt", Key="model.txt", Body=b"weights")
    oidc = {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.example/id/X"}
    role = moto.role_with_access("runner-pod", ["bkt"], oidc)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2ln")
    # moto cannot enforce authentication and still answer the unsigned
    # AssumeRoleWithWebIdentity call, so this server does not check signatures:
    # the control below proves the mount had no other source of credentials.
    base = clean_env(tmp_path, AWS_ENDPOINT_URL_STS=moto.endpoint_url)
    control = mount("s3://bkt", "--endpoint-url", moto.endpoint_url, env=base, start=False,
                    name="control", cache="cache-control")  # fmt: skip
    failed = control.start(check=False)
    assert failed.returncode != 0 and "no credentials found" in failed.stderr

    env = {**base, "AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)}
    m = mount("s3://bkt", "--endpoint-url", moto.endpoint_url, env=env)
    assert (m.path / "model.txt").read_bytes() == b"weights"
    assert moto.requests("POST / HTTP/1.1") >= 1  # the STS call


def test_a_public_bucket_mounts_with_no_credentials_at_all(moto, mount, tmp_path):
    """A researcher's laptop browsing open data: nothing to sign with, --allow-anonymous."""
    admin = moto.admin("s3")
    admin.create_bucket(Bucket="open-data")
    public = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::open-data"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::open-data/*"}]}  # fmt: skip
    admin.put_bucket_policy(Bucket="open-data", Policy=json.dumps(public))
    admin.put_object(Bucket="open-data", Key="README", Body=b"open\n", ACL="public-read")
    env = clean_env(tmp_path)
    refused = mount("s3://open-data", "--endpoint-url", moto.endpoint_url, env=env, start=False)
    failed = refused.start(check=False)
    assert failed.returncode != 0 and "no credentials found" in failed.stderr
    m = mount("s3://open-data", "--endpoint-url", moto.endpoint_url, "--allow-anonymous", env=env,
              name="anon", cache="cache-anon")  # fmt: skip
    assert os.listdir(m.path) == ["README"]
    assert (m.path / "README").read_bytes() == b"open\n"


def test_a_shared_profile_with_credential_process(moto, mount, tmp_path):
    """A laptop or node profile whose keys come from a helper program (refreshable)."""
    admin = moto.admin("s3")
    admin.create_bucket(Bucket="bkt")
    admin.put_object(Bucket="bkt", Key="f.txt", Body=b"from a profile")
    key = moto.user_with_access("researcher", ["bkt"])
    moto.enforce_auth()
    helper = tmp_path / "issue-creds"
    doc = json.dumps({"Version": 1, "AccessKeyId": key["access_key"],
                      "SecretAccessKey": key["secret_key"]})  # fmt: skip
    helper.write_text(f"#!/bin/sh\ncat <<'EOF'\n{doc}\nEOF\n")
    helper.chmod(0o700)
    profile = tmp_path / "aws-config"
    profile.write_text(f"[profile lab]\ncredential_process = {helper}\nregion = us-east-1\n")
    env = clean_env(tmp_path, AWS_CONFIG_FILE=str(profile), AWS_PROFILE="lab")
    m = mount("s3://bkt", "--endpoint-url", moto.endpoint_url, env=env)
    assert (m.path / "f.txt").read_bytes() == b"from a profile"
    assert_no_secret_exposed(m, [key["secret_key"]])
