"""`moto_server` on loopback: S3 with IAM users, STS and bucket policies, stopped by pid.

rclone checks one key pair; moto knows IAM users, roles, temporary credentials
and bucket policies, so the tests that are about *whose* credentials sign a
request run against it. Set-up calls go in before `enforce_auth()`; from then
on moto checks every signature and every IAM policy, as AWS does.

One moto limitation shapes the tests: with authentication enforced, moto
answers any unsigned request with a 500 (it reads a missing Authorization
header). Tests that need unsigned reads use a server without enforcement,
where moto still applies bucket policies and object ACLs to unsigned requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from artifactfs.devserver import free_port
from artifactfs.processes import stop_process

ACCOUNT = "123456789012"  # moto's default account


def s3_policy(buckets: list[str]) -> str:
    """An IAM policy allowing everything on `buckets`, nothing else."""
    resources = [f"arn:aws:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")]
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": resources}
    return json.dumps({"Version": "2012-10-17", "Statement": [allow]})


class MotoServer:
    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin_key = {"access_key": "admin", "secret_key": "admin"}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        log = open(self.log_path, "wb")  # the child owns it
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited; see {self.log_path}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("moto_server did not start in 30 s")

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def admin(self, service: str) -> Any:
        """A client allowed everything (any key before enforce_auth(), an admin's after)."""
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self._admin_key["access_key"],
                            aws_secret_access_key=self._admin_key["secret_key"])  # fmt: skip

    def enforce_auth(self) -> None:
        """From now on every request must be signed by a key moto knows and IAM allows."""
        iam = self.admin("iam")
        iam.create_user(UserName="admin")
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [everything]})
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=policy)
        self._admin_key = self.new_key("admin")
        req = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(req, timeout=5).close()

    def user_with_access(self, name: str, buckets: list[str]) -> dict[str, str]:
        """An IAM user allowed everything on `buckets` and nothing else; its first key."""
        iam = self.admin("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=s3_policy(buckets))
        return self.new_key(name)

    def new_key(self, user: str) -> dict[str, str]:
        key = self.admin("iam").create_access_key(UserName=user)["AccessKey"]
        return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}

    def revoke_key(self, user: str, access_key: str) -> None:
        self.admin("iam").delete_access_key(UserName=user, AccessKeyId=access_key)

    def role_with_access(self, name: str, buckets: list[str], trust: dict[str, Any]) -> str:
        """An IAM role allowed everything on `buckets`; its ARN."""
        iam = self.admin("iam")
        statement = {"Effect": "Allow", "Principal": trust, "Action": "sts:*"}
        doc = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc)["Role"]
        iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=s3_policy(buckets))
        return str(role["Arn"])

    def requests(self, needle: str) -> int:
        """How many request lines in moto's log contain `needle` (e.g. 'GET /bkt/key')."""
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0
