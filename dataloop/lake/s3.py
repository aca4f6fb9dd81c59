"""The lake on S3 or MinIO, through boto3.

Endpoint, region and credentials come from the environment: ``DATALOOP_S3_ENDPOINT`` (or
boto3's own ``AWS_ENDPOINT_URL``), ``AWS_REGION``/``AWS_DEFAULT_REGION`` and the usual
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.

Write-once and pointer swaps use S3 conditional writes (``If-None-Match: *`` and
``If-Match: <etag>``), which AWS S3 and MinIO enforce. Fallback for a server that ignores them:
set ``DATALOOP_S3_CONDITIONAL=0``; then write-once is a HEAD before the PUT and pointer swaps
re-read the ETag before writing. That leaves a small race window, so such a deployment must keep
a single writer per pointer, which the Dagster layout already guarantees (every pointer is
written by exactly one partition's step, and run concurrency is one per partition).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", *, client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.conditional = os.environ.get("DATALOOP_S3_CONDITIONAL", "1") != "0"
        self.client = client or boto3.client(
            "s3",
            endpoint_url=os.environ.get("DATALOOP_S3_ENDPOINT") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                # Checksums are sent where we compute them ourselves (SHA-256 per part).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, prefix)

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
                raise ObjectExists(key) from None
            raise
        return ObjectInfo(key, len(data), datetime.now(UTC), resp["ETag"].strip('"'), metadata)

    def open(self, key: str) -> BinaryIO:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise
        return resp["Body"]

    def get_range(self, key, start, length):
        if length <= 0:
            return b""
        try:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self._k(key), Range=f"bytes={start}-{start + length - 1}"
            )
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise
        return resp["Body"].read()

    def head(self, key):
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as err:
            if _status(err) == 404 or _code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return self._info(key, r["ContentLength"], r["LastModified"], r["ETag"], r.get("Metadata"))

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for o in page.get("Contents", []):
                key = o["Key"][len(self.prefix) :]
                yield self._info(key, o["Size"], o["LastModified"], o["ETag"])

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    # -- pointers --------------------------------------------------------------------------
    def read_pointer(self, key):
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                return None
            raise
        return resp["Body"].read(), resp["ETag"].strip('"')

    def swap_pointer(self, key, data, expected):
        kwargs = {}
        if self.conditional:
            kwargs = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": f'"{expected}"'}
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
        for page in self.client.get_paginator("list_parts").paginate(**kwargs):
            for p in page.get("Parts", []):
                parts.append(PartInfo(p["PartNumber"], p["Size"], p["ETag"].strip('"')))
        return parts

    def complete_multipart(self, key, upload_id, parts):
        kwargs = {}
        if self.conditional:
            kwargs["IfNoneMatch"] = "*"
        elif self.head(key) is not None:
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
