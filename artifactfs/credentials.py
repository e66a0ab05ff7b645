"""Who signs which request: given keys (an artifact's, the config's) or the AWS chain.

One boto3 session per credential source, made once, so botocore's own
refresh (web identity, instance metadata) runs in one place per source. Every
secret a session holds is handed to the log redactor as the session is made.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3

from artifactfs.logsetup import redactor
from artifactfs.studio import StoreConfig

_sessions: dict[str, boto3.session.Session] = {}


def session_for(store_config: StoreConfig | None = None) -> boto3.session.Session:
    """The config's or artifact's keys if given, else the AWS default chain
    (environment, shared profile, web identity token, instance metadata)."""
    if store_config is not None and store_config.has_credentials:
        secret = f"{store_config.secret_key}\0{store_config.session_token}".encode()
        ident = f"{store_config.access_key}:{hashlib.sha256(secret).hexdigest()}"
    else:
        ident = "chain"
    session = _sessions.get(ident)
    if session is None:
        if ident == "chain":
            session = boto3.session.Session()
        else:
            assert store_config is not None
            session = boto3.session.Session(
                aws_access_key_id=store_config.access_key,
                aws_secret_access_key=store_config.secret_key,
                aws_session_token=store_config.session_token,
                region_name=store_config.region,
            )
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            redactor.add(frozen.secret_key, frozen.token)
        _sessions[ident] = session
    return session


def use_loaded_credentials() -> None:
    """Under systemd, `LoadCredential=aws:...` puts an AWS credentials file in
    $CREDENTIALS_DIRECTORY; point botocore's shared-file lookup at it."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return
    aws = Path(directory) / "aws"
    if aws.is_file() and "AWS_SHARED_CREDENTIALS_FILE" not in os.environ:
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(aws)
