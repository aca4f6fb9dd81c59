"""The lake on S3 or MinIO, through boto3.

Endpoint, region, credentials, retries and timeouts are one ``S3Options``: in Dagster from the
``lake`` resource's ``s3`` settings (``dataloop/defs/resources.py``, shown on the UI's resource
page), on the command line from the environment (``S3Options.from_env``):
``DATALOOP_S3_ENDPOINT`` (or boto3's own ``AWS_ENDPOINT_URL``), ``AWS_REGION``/
``AWS_DEFAULT_REGION`` and boto3's credential chain (``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``, a profile, a pod's web identity).

Write-once and pointer swaps use S3 conditional writes (``If-None-Match: *`` and
``If-Match: <etag>``), which AWS S3, MinIO, moto and Ceph radosgw enforce on PutObject. The ETag
goes into ``If-Match`` without its quotes: radosgw 16 compares the header byte for byte with the
stored, unquoted ETag, so the RFC's quoted form never matches there (a compare-and-swap that
always fails); AWS, MinIO and moto accept both forms. Measured on radosgw 16 with 8 racing
writers per key: exactly one wins, for both headers (tests/test_lake.py races them on every
backend).

radosgw 16 ignores ``If-None-Match`` on CompleteMultipartUpload (it overwrites), so a large
object is also HEADed just before it is completed. That leaves a window of one round trip in
which two uploads of the same key can both complete; the bucket is versioned (the displaced one
is kept), and the manifest, a small PUT that is write-once on every server, names the SHA-256
that ingest re-checks, so the race can never commit the wrong bytes unnoticed.

Fallback for a server that ignores conditional PUTs: set ``DATALOOP_S3_CONDITIONAL=0``; then
write-once is a HEAD before the PUT and pointer swaps re-read the ETag before writing. That leaves
a small race window, so such a deployment must keep a single writer per pointer, which the
Dagster layout already guarantees (every pointer is written by exactly one partition's step, and
run concurrency is one per partition).

Least privilege: an identity whose ``s3:ListBucket`` is narrowed by an ``s3:prefix`` condition (a
vehicle) gets 403, not 404, for a HEAD of a missing key (AWS and radosgw both). ``head`` then asks
a listing of exactly that key, which such an identity may make: the answer is unambiguous, and
any other 403 (a wrong key, a denied prefix) still raises.

Faults (tests/test_storage_faults.py drives all of this through a fault-injecting proxy):

- botocore retries 5xx, throttling (503 SlowDown), connection resets and timeouts in its
  ``standard`` mode with exponential backoff and jitter (50 ms base for errors, 1 s for
  throttling, capped at 20 s), up to ``DATALOOP_S3_MAX_ATTEMPTS`` (10) attempts; connect and
  read timeouts (``DATALOOP_S3_CONNECT_TIMEOUT``/``DATALOOP_S3_READ_TIMEOUT``, 5 s/30 s) turn
  a stalled server into a retry rather than a hang. ``DATALOOP_S3_RETRY_MODE=adaptive`` adds
  client-side rate limiting for very large fleets of writers.
- A response body that breaks off (a reset or a stall mid-body, fewer bytes than its
  Content-Length) is detected by botocore's length check and read again: whole for small
  objects, from the byte where it broke (a ranged GET pinned to the ETag) for streams.
- A write whose response was lost may have landed: its retry then meets its own object
  (412 on ``If-None-Match``/``If-Match``, or ``NoSuchUpload`` on completing a multipart
  upload). When the request was retried and the object in place has exactly our content
  (its ETag is our MD5, or the multipart ETag of our parts), the write succeeded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from dataloop.lake.store import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    PreconditionFailed,
)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _retried(err: ClientError) -> bool:
    """Whether botocore sent the request more than once (an earlier try may have landed)."""
    return int(err.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


def _multipart_etag(parts: list[PartInfo]) -> str:
    """The ETag S3 gives an object assembled from these parts."""
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


BODY_ERRORS = (
    IncompleteReadError,
    ResponseStreamingError,
    ReadTimeoutError,
    ConnectionError,
    HTTPClientError,
    Urllib3Error,
    OSError,
)
"""What a response body that breaks off raises while it is read."""
BODY_ATTEMPTS = 8


def _env_number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class S3Options:
    """How the lake talks to its S3 server. Credentials left ``None`` come from boto3's chain."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    use_ssl: bool = True
    verify: bool | None = None
    unsigned: bool = False
    max_attempts: int = 10
    retry_mode: str = "standard"
    connect_timeout_s: float = 5
    read_timeout_s: float = 30
    conditional_writes: bool = True

    @classmethod
    def from_env(cls) -> S3Options:
        """The settings of the environment variables (module docstring)."""
        return cls(
            # None: boto3 resolves AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself.
            endpoint_url=os.environ.get("DATALOOP_S3_ENDPOINT") or None,
            region=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or cls.region,
            max_attempts=int(_env_number("DATALOOP_S3_MAX_ATTEMPTS", cls.max_attempts)),
            retry_mode=os.environ.get("DATALOOP_S3_RETRY_MODE") or cls.retry_mode,
            connect_timeout_s=_env_number("DATALOOP_S3_CONNECT_TIMEOUT", cls.connect_timeout_s),
            read_timeout_s=_env_number("DATALOOP_S3_READ_TIMEOUT", cls.read_timeout_s),
            conditional_writes=os.environ.get("DATALOOP_S3_CONDITIONAL", "1") != "0",
        )

    def client_config(self) -> Config:
        """botocore settings: retries with backoff, timeouts, path-style addressing."""
        return Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": self.max_attempts, "mode": self.retry_mode},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            tcp_keepalive=True,
            # Checksums are sent where we compute them ourselves (SHA-256 per part).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version=UNSIGNED if self.unsigned else None,
        )

    def client(self):
        """A boto3 S3 client with these settings."""
        session = boto3.session.Session(profile_name=self.profile)
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            use_ssl=self.use_ssl,
            verify=self.verify,
            config=self.client_config(),
        )


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 2.0))


class _RetryingClient:
    """The boto3 client, with one more retry layer: botocore reads the body of a
    non-streaming response (a listing, an error document) outside its retry loop, so a body
    that breaks off there surfaces as a raw urllib3 error. Such calls are sent again; a
    ClientError after a resend counts as retried (our earlier try may have landed)."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr) or name in ("get_paginator", "can_paginate"):
            return attr

        def call(**kwargs):
            for attempt in range(BODY_ATTEMPTS):
                try:
                    return attr(**kwargs)
                except ClientError as err:
                    if attempt:
                        meta = err.response.setdefault("ResponseMetadata", {})
                        meta["RetryAttempts"] = int(meta.get("RetryAttempts") or 0) + attempt
                    raise
                except (Urllib3Error, IncompleteReadError, ResponseStreamingError):
                    if attempt == BODY_ATTEMPTS - 1:
                        raise
                    _backoff(attempt)
            raise AssertionError("unreachable")

        return call


class _ResumingBody(io.RawIOBase):
    """A GET body that, when the connection breaks mid-body, reopens the object from the
    byte where it broke (a ranged GET pinned to the first response's ETag)."""

    def __init__(self, store: S3Store, key: str, resp: dict) -> None:
        self._store, self._key = store, key
        self._body = resp["Body"]
        self._etag = resp["ETag"]
        self._size = int(resp["ContentLength"])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        for attempt in range(BODY_ATTEMPTS):
            try:
                data = self._body.read(size if size is not None and size >= 0 else None)
                if not data:
                    raise IncompleteReadError(actual_bytes=self._pos, expected_bytes=self._size)
                self._pos += len(data)
                return data
            except BODY_ERRORS:
                if attempt == BODY_ATTEMPTS - 1:
                    raise
                _backoff(attempt)
                self._body.close()
                self._body = self._store.client.get_object(
                    Bucket=self._store.bucket,
                    Key=self._store._k(self._key),
                    Range=f"bytes={self._pos}-",
                    IfMatch=self._etag,
                )["Body"]
        raise AssertionError("unreachable")

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        out = bytearray()
        while chunk := self.read(1024 * 1024):
            out += chunk
        return bytes(out)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Store(ObjectStore):
    def __init__(
        self, bucket: str, prefix: str = "", *, client=None, options: S3Options | None = None
    ):
        """``options`` default to the environment's; ``client`` (another identity's) overrides
        the one they would make."""
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.options = options or S3Options.from_env()
        self.conditional = self.options.conditional_writes
        self.own_client = client is not None
        self.client = _RetryingClient(client or self.options.client())

    def __reduce__(self):
        """Pickled as its URL and options (a worker process opens its own client); a store
        given another identity's client cannot travel."""
        if self.own_client:
            raise TypeError("an S3Store made with its own client cannot be sent to a process")
        return (S3Store.from_url, (self.url, self.options))

    @classmethod
    def from_url(cls, url: str, options: S3Options | None = None) -> S3Store:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, prefix, options=options)

    def _k(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid lake key {key!r}")
        return self.prefix + key

    def _info(self, key: str, size: int, last_modified, etag: str, metadata=None) -> ObjectInfo:
        return ObjectInfo(key, int(size), last_modified, etag.strip('"'), metadata or None)

    # -- objects -------------------------------------------------------------------------
    def put(self, key, data, *, metadata=None):
        kwargs = {}
        if self.conditional:
            kwargs["IfNoneMatch"] = "*"
        elif self.head(key) is not None:
            raise ObjectExists(key)
        try:
            resp = self.client.put_object(
                Bucket=self.bucket,
                Key=self._k(key),
                Body=data,
                Metadata=metadata or {},
                ChecksumSHA256=_sha256_b64(data),
                **kwargs,
            )
        except ClientError as err:
            if _status(err) in (409, 412) or _code(err) in ("PreconditionFailed",):
                mine = hashlib.md5(data).hexdigest()
                if _retried(err) and (info := self.head(key)) and info.etag == mine:
                    return info  # our earlier try landed; its response was lost
                raise ObjectExists(key) from None
            raise
        return ObjectInfo(key, len(data), datetime.now(UTC), resp["ETag"].strip('"'), metadata)

    def _get(self, key: str, **kwargs) -> dict:
        """A whole (small) GET, read again when the body breaks off."""
        for attempt in range(BODY_ATTEMPTS):
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key), **kwargs)
            try:
                return {**resp, "Data": resp["Body"].read()}
            except BODY_ERRORS:
                if attempt == BODY_ATTEMPTS - 1:
                    raise
                _backoff(attempt)
        raise AssertionError("unreachable")

    def open(self, key: str) -> BinaryIO:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise
        return io.BufferedReader(_ResumingBody(self, key, resp), 1024 * 1024)  # type: ignore[return-value]

    def get(self, key: str) -> bytes:
        try:
            return self._get(key)["Data"]
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise

    def get_range(self, key, start, length):
        if length <= 0:
            return b""
        try:
            resp = self._get(key, Range=f"bytes={start}-{start + length - 1}")
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise
        return resp["Data"]

    def head(self, key):
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as err:
            if _status(err) == 404 or _code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            if _status(err) == 403:
                return self._head_by_listing(key, err)
            raise
        return self._info(key, r["ContentLength"], r["LastModified"], r["ETag"], r.get("Metadata"))

    def _head_by_listing(self, key: str, denied: ClientError) -> ObjectInfo | None:
        """A HEAD answered 403: the key may be missing and this identity may list only some
        prefixes (S3 answers 403, not 404, for a missing key without ListBucket). A listing of
        exactly this key tells: absent is ``None``; present means the read was really denied,
        and that 403 is raised (as is a denied listing's)."""
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._k(key), MaxKeys=1)
        except ClientError as listing:
            raise listing from denied  # its body says why (a HEAD's 403 has none)
        if any(o["Key"] == self._k(key) for o in page.get("Contents", [])):
            raise denied
        return None

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        while True:
            page = self.client.list_objects_v2(**kwargs)
            for o in page.get("Contents", []):
                key = o["Key"][len(self.prefix) :]
                yield self._info(key, o["Size"], o["LastModified"], o["ETag"])
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    # -- pointers --------------------------------------------------------------------------
    def read_pointer(self, key):
        try:
            resp = self._get(key)
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                return None
            raise
        return resp["Data"], resp["ETag"].strip('"')

    def swap_pointer(self, key, data, expected):
        kwargs = {}
        if self.conditional:
            # Unquoted: the only form radosgw 16 matches (see the module docstring).
            kwargs = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        else:
            current = self.head(key)
            if (current.etag if current else None) != expected:
                raise PreconditionFailed(key)
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **kwargs)
        except ClientError as err:
            if _status(err) in (409, 412) or _code(err) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
                "NoSuchKey",
            ):
                info = self.head(key) if _retried(err) else None
                if info and info.etag == hashlib.md5(data).hexdigest():
                    return info.etag  # our earlier try landed; its response was lost
                raise PreconditionFailed(key) from None
            raise
        return resp["ETag"].strip('"')

    # -- multipart -------------------------------------------------------------------------
    def start_multipart(self, key, metadata=None):
        resp = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self._k(key), Metadata=metadata or {}
        )
        return resp["UploadId"]

    def find_multipart(self, key):
        resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self._k(key))
        uploads = [u for u in resp.get("Uploads", []) if u["Key"] == self._k(key)]
        uploads.sort(key=lambda u: u["Initiated"])
        return [u["UploadId"] for u in uploads]

    def put_part(self, key, upload_id, number, data):
        resp = self.client.upload_part(
            Bucket=self.bucket,
            Key=self._k(key),
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
        )
        return PartInfo(number, len(data), resp["ETag"].strip('"'))

    def list_parts(self, key, upload_id):
        parts: list[PartInfo] = []
        kwargs = {"Bucket": self.bucket, "Key": self._k(key), "UploadId": upload_id}
        while True:
            page = self.client.list_parts(**kwargs)
            for p in page.get("Parts", []):
                parts.append(PartInfo(p["PartNumber"], p["Size"], p["ETag"].strip('"')))
            if not page.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    def complete_multipart(self, key, upload_id, parts):
        kwargs = {}
        if self.conditional:
            kwargs["IfNoneMatch"] = "*"
        if self.head(key) is not None:  # also where the server ignores the header (radosgw)
            raise ObjectExists(key)
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._k(key),
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p.number, "ETag": f'"{p.etag}"'}
                        for p in sorted(parts, key=lambda p: p.number)
                    ]
                },
                **kwargs,
            )
        except ClientError as err:
            landed = _retried(err) and (info := self.head(key)) is not None
            if landed and info.etag == _multipart_etag(sorted(parts, key=lambda p: p.number)):
                return info  # our earlier try completed it; its response was lost
            if _status(err) in (409, 412) or _code(err) == "PreconditionFailed":
                raise ObjectExists(key) from None
            raise
        info = self.head(key)
        if info is None:
            raise ObjectNotFound(key)
        return info

    def abort_multipart(self, key, upload_id):
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._k(key), UploadId=upload_id
            )
        except ClientError as err:
            if _code(err) != "NoSuchUpload":
                raise
