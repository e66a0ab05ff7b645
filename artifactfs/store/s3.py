"""S3-compatible object store on boto3: the only module that talks S3.

boto3 is blocking, so every call runs in a trio worker thread behind a
CapacityLimiter, inside a trio deadline. The thread is abandoned when the
deadline passes (botocore's own socket timeouts end it later), so a dead
server can never hang a FUSE request.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import trio
from botocore import UNSIGNED
from botocore.config import Config

from artifactfs.errors import (
    AccessDenied,
    ArtifactFSError,
    BucketNotFound,
    NotFound,
    StaleObject,
    StoreUnavailable,
)
from artifactfs.metrics import Metrics
from artifactfs.store.base import (
    ListPage,
    ObjectInfo,
    ObjectVersion,
    content_range_total,
    is_weak,
    normalize_etag,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "403",
}
_EXPIRED = {"ExpiredToken", "TokenRefreshRequired", "RequestExpired"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_STALE = {"PreconditionFailed", "412"}
_attempts = threading.local()  # what the call running in this worker thread went through


def _count_attempt(**_: Any) -> None:
    box = getattr(_attempts, "box", None)
    if box is not None:
        box["sent"] += 1


def _note_failure(response: Any = None, caught_exception: Any = None, **_: Any) -> None:
    """Remember why the last attempt failed, to name it if the deadline passes."""
    box = getattr(_attempts, "box", None)
    if box is None:
        return
    if caught_exception is not None:
        box["last"] = type(caught_exception).__name__
    elif response is not None:
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code") or getattr(http, "status_code", "")
        if str(code) not in ("", "200", "206"):
            box["last"] = f"server error {code}"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach one bucket. Credentials are deliberately not part of it."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool | None = None  # None: path style when a custom endpoint is set
    max_concurrency: int = 16
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    request_timeout: float = 30.0  # the deadline of one whole operation, retries included
    max_attempts: int = 3
    allow_anonymous: bool = False  # retry unsigned what the credentials are refused for


def _total_size(resp: dict[str, Any]) -> int:
    """The object's size from a (ranged) GET: Content-Range's total, else the length."""
    total = content_range_total(resp.get("ContentRange"))
    return total if total is not None else int(resp.get("ContentLength", -1))


def _mtime_ns(value: datetime | None) -> int:
    return int(value.timestamp() * 1_000_000_000) if value else 0


def classify(exc: BaseException, what: str) -> ArtifactFSError:
    """Turn a botocore failure into a domain error whose message names the cause.

    Messages carry the bucket/key and the server's error code, never request
    headers or credentials.
    """
    if isinstance(exc, ArtifactFSError):
        return exc
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AccessDenied(
            f"{what}: no credentials found (environment, shared profile, web identity "
            "or instance metadata; --allow-anonymous reads public buckets unsigned)"
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return BucketNotFound(f"{what}: the bucket does not exist")
        if code in _EXPIRED:
            return AccessDenied(f"{what}: the credentials have expired ({code})")
        if code in _DENIED or status == 403:
            return AccessDenied(f"{what}: access denied by the server ({code or status})")
        if code in _MISSING_KEY or status == 404:
            return NotFound(f"{what}: no such object")
        if code in _STALE or status == 412:
            return StaleObject(f"{what}: the object changed (precondition failed)")
        return StoreUnavailable(f"{what}: server error {code or status}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return StoreUnavailable(f"{what}: cannot connect to the endpoint")
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
        return StoreUnavailable(f"{what}: connection timed out")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return StoreUnavailable(f"{what}: the server stopped answering")
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError | ValueError):
        return StoreUnavailable(f"{what}: {type(exc).__name__}")
    return StoreUnavailable(f"{what}: unexpected {type(exc).__name__}")


class S3Store:
    """ObjectStore over one S3 bucket (AWS, MinIO, rclone, ...).

    With `allow_anonymous`, a request the credentials are refused for (or that
    has no credentials to sign with) is sent again unsigned, StudioML's policy
    of one private key set plus public buckets. Once unsigned works for this
    bucket it is tried first, so a public bucket costs one request per read.
    """

    def __init__(
        self,
        settings: S3Settings,
        session: boto3.session.Session | None = None,
        metrics: Metrics | None = None,
    ):
        self.bucket = settings.bucket
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._session = session or boto3.session.Session()
        self._limiter = trio.CapacityLimiter(settings.max_concurrency)
        self._clients = self._make_clients(settings.max_attempts, settings.read_timeout)
        self._unsigned_first = False

    def _make_clients(self, max_attempts: int, read_timeout: float) -> tuple[Any, ...]:
        """The signed client, then (with allow_anonymous) an unsigned one."""
        signed = self._make_client(max_attempts, read_timeout)
        if not self.settings.allow_anonymous:
            return (signed,)
        return signed, self._make_client(max_attempts, read_timeout, unsigned=True)

    def _make_client(self, max_attempts: int, read_timeout: float, unsigned: bool = False) -> Any:
        s = self.settings
        path_style = s.path_style if s.path_style is not None else bool(s.endpoint_url)
        config = Config(
            signature_version=UNSIGNED if unsigned else None,
            region_name=s.region or self._session.region_name or "us-east-1",
            connect_timeout=s.connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=s.max_concurrency + 4,
            s3={"addressing_style": "path" if path_style else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="artifactfs",
        )
        client = self._session.client("s3", endpoint_url=s.endpoint_url, config=config)
        client.meta.events.register("before-send.s3", _count_attempt)  # retries, for metrics
        client.meta.events.register("needs-retry.s3", _note_failure)
        return client

    def describe(self) -> str:
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        return f"s3://{self.bucket}{where}"

    async def _call(
        self,
        what: str,
        fn: Callable[[Any], T],
        deadline: float | None = None,
        clients: tuple[Any, ...] | None = None,
        trace: dict[str, str] | None = None,
    ) -> T:
        """Run `fn(client)` in a worker thread; refused signed, try unsigned if allowed.

        `trace["last"]` is set to why the latest failed attempt failed."""
        clients = clients or self._clients
        order = clients[::-1] if self._unsigned_first else clients
        refused: AccessDenied | None = None
        for client in order:
            try:
                result = await self._run(what, lambda c=client: fn(c), deadline, trace)
            except AccessDenied as exc:
                refused = refused or exc
                continue
            if refused is not None:  # the second client worked: try it first from now on
                self._unsigned_first = not self._unsigned_first
                if self._unsigned_first:
                    log.info("s3://%s: the credentials are refused (%s); reading it unsigned "
                             "(--allow-anonymous)", self.bucket, refused)  # fmt: skip
            return result
        assert refused is not None
        if len(order) > 1:
            raise AccessDenied(f"{refused}; refused unsigned as well") from None
        raise refused

    async def _run(
        self, what: str, fn: Callable[[], T], deadline: float | None, trace: dict[str, str] | None
    ) -> T:
        box: dict[str, Any] = {"sent": 0, "last": None}

        def counted() -> T:
            _attempts.box = box
            return fn()

        try:
            with trio.fail_after(deadline or self.settings.request_timeout):
                return await trio.to_thread.run_sync(
                    counted, limiter=self._limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError:
            seconds = deadline or self.settings.request_timeout
            raise self._no_answer(what, seconds, box["last"]) from None
        except Exception as exc:
            error = classify(exc, what)
            self.metrics.store_errors[type(error).__name__] += 1
            raise error from None
        finally:
            self.metrics.retries += max(0, box["sent"] - 1)
            if trace is not None and box["last"]:
                trace["last"] = box["last"]

    def _no_answer(self, what: str, seconds: float, cause: str | None) -> StoreUnavailable:
        self.metrics.store_errors["Timeout"] += 1
        why = f" (last: {cause})" if cause else ""
        return StoreUnavailable(f"{what}: no answer within {seconds:g} s{why}")

    async def check(self, deadline: float = 12.0) -> None:
        """List one key with few retries, so a bad setup fails the mount fast."""
        clients = self._make_clients(max_attempts=2, read_timeout=min(5.0, deadline))
        await self._call(
            f"s3://{self.bucket}",
            lambda c: c.list_objects_v2(Bucket=self.bucket, MaxKeys=1),
            deadline,
            clients,
        )

    async def head(self, key: str) -> ObjectInfo:
        resp = await self._call(f"s3://{self.bucket}/{key}", lambda c: self._head_sync(c, key))
        size = int(resp["ContentLength"])
        mtime = _mtime_ns(resp.get("LastModified"))
        return ObjectInfo(key, size, normalize_etag(resp.get("ETag"), size, mtime), mtime)

    def _head_sync(self, client: Any, key: str) -> dict[str, Any]:
        """HEAD, but a bare 400 (a HEAD answer has no body to name its cause: an
        expired or invalid token, most often) is asked again as a 1-byte GET."""
        try:
            return dict(client.head_object(Bucket=self.bucket, Key=key))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "400":
                raise
        resp = client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")
        resp["Body"].close()
        return {**resp, "ContentLength": _total_size(resp)}

    async def list_page(
        self,
        prefix: str,
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if token:
            kwargs["ContinuationToken"] = token
        resp = await self._call(
            f"s3://{self.bucket}/{prefix}", lambda c: c.list_objects_v2(**kwargs)
        )
        page = ListPage()
        for item in resp.get("Contents", ()):
            size = int(item.get("Size", 0))
            mtime = _mtime_ns(item.get("LastModified"))
            etag = normalize_etag(item.get("ETag"), size, mtime)
            page.objects.append(ObjectInfo(item["Key"], size, etag, mtime))
        page.prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", ())]
        if resp.get("IsTruncated"):
            page.next_token = resp.get("NextContinuationToken")
        return page

    async def get_range(self, version: ObjectVersion, start: int, length: int) -> bytes:
        """A ranged GET pinned to `version`, retried with jittered backoff.

        The response's ETag and total size are checked as well as sending
        If-Match, because some S3-compatible servers ignore If-Match.
        """
        what = f"s3://{self.bucket}/{version.key} [{start}+{length}]"
        attempts = self.settings.max_attempts
        trace: dict[str, str] = {}
        with trio.move_on_after(self.settings.request_timeout) as scope:
            for attempt in range(1, attempts + 1):
                try:
                    return await self._call(
                        what, lambda c: self._get_sync(c, version, start, length, what),
                        trace=trace,
                    )  # fmt: skip
                except StoreUnavailable as exc:
                    trace["last"] = str(exc).removeprefix(f"{what}: ")
                    if attempt == attempts:
                        raise
                    delay = random.uniform(0, min(4.0, 0.2 * 2**attempt))
                    self.metrics.retries += 1
                    log.debug("%s; retry %d/%d in %.2f s", exc, attempt, attempts - 1, delay)
                    await trio.sleep(delay)
        assert scope.cancelled_caught
        raise self._no_answer(what, self.settings.request_timeout, trace.get("last"))

    def _get_sync(
        self, client: Any, version: ObjectVersion, start: int, length: int, what: str
    ) -> bytes:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": version.key,
            "Range": f"bytes={start}-{start + length - 1}",
        }
        if not is_weak(version.etag):
            kwargs["IfMatch"] = f'"{version.etag}"'
        resp = client.get_object(**kwargs)
        body = resp["Body"]
        try:
            total = _total_size(resp)
            etag = normalize_etag(resp.get("ETag"), total, _mtime_ns(resp.get("LastModified")))
            if total != version.size or etag != version.etag:
                raise StaleObject(f"{what}: the object was replaced since it was opened")
            data = body.read()
        finally:
            body.close()
        if len(data) != length:
            raise StoreUnavailable(f"{what}: short read ({len(data)} of {length} bytes)")
        return data

    async def get_object(self, key: str, max_size: int) -> bytes:
        what = f"s3://{self.bucket}/{key}"

        def get(client: Any) -> bytes:
            resp = client.get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"]
            try:
                if int(resp.get("ContentLength", 0)) > max_size:
                    raise StoreUnavailable(f"{what}: larger than {max_size} bytes")
                return bytes(body.read())
            finally:
                body.close()

        return await self._call(what, get)

    async def put_object(self, key: str, data: bytes) -> None:
        await self._call(
            f"s3://{self.bucket}/{key}",
            lambda c: c.put_object(Bucket=self.bucket, Key=key, Body=data),
            clients=self._clients[:1],  # never write unsigned
        )

    async def aclose(self) -> None:
        for client in self._clients:
            client.close()
