"""The lake bucket's rules as plain documents: zones with their lifecycle, the bucket policy and
one policy per vehicle. Pure functions: ``bootstrap`` applies them, tests evaluate them, and on
AWS the same JSON documents become IAM policies.

S3 versioning is a property of the whole bucket, not of a prefix. The raw zone needs it (an
overwritten or deleted upload stays recoverable for ``RAW_RECOVERY_DAYS``), so the bucket is
versioned and every other zone's lifecycle rule expires noncurrent versions after a day: only
``raw/`` (and ``releases/``) keep history. The zones and their prefixes are the lake layout's
(``lake/layout.py``): every top-level prefix is in one, so every prefix has a lifecycle rule
(a prefix without one would keep noncurrent versions, and a forgotten drive's bytes, forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataloop.lake import layout as L
from dataloop.quality.retention import load_retention
from dataloop.quality.suites import rules_dir

RAW_RECOVERY_DAYS = 30  # a deleted/overwritten upload is recoverable this long (and no longer)
RELEASE_HISTORY_DAYS = 90  # replaced release metadata stays recoverable for audits
DAGSTER_LOG_DAYS = 30


@dataclass(frozen=True)
class Zone:
    """A top-level part of the lake and how long S3 keeps what is in it."""

    name: str
    prefixes: tuple[str, ...]
    expire_days: int | None  # current objects (assets/quality/retention.yaml); None: kept
    noncurrent_days: int  # versions that were overwritten or deleted
    abort_multipart_days: int | None = None  # unfinished uploads


def zones(retention_file: Path | None = None) -> list[Zone]:
    """Every zone of the lake layout with its lifecycle: the aged zones expire after the days
    of retention.yaml (kept when it names none; Dagster's step logs after DAGSTER_LOG_DAYS),
    the indexes, history and artefacts never expire, the release zone keeps its history for
    audits."""
    retention = load_retention(retention_file or rules_dir() / "quality" / "retention.yaml")
    out = []
    for zone in L.ZONES:
        expire = retention.get(zone.name, {}).get("days")
        noncurrent, abort = 1, (1 if zone.aged else None)
        if zone.name == "raw":
            # vehicles resume an interrupted upload the next day at the latest
            noncurrent, abort = RAW_RECOVERY_DAYS, 7
        elif zone.name == "releases":
            noncurrent, abort = RELEASE_HISTORY_DAYS, 1
        elif zone.name == "dagster":  # S3ComputeLogManager, infra/helm/values.yaml
            expire = DAGSTER_LOG_DAYS if expire is None else expire
        days = None if expire is None else int(expire)
        out.append(Zone(zone.name, zone.prefixes, days, noncurrent, abort))
    return out


def lifecycle_rules(lake_prefix: str, zone_list: list[Zone]) -> list[dict[str, Any]]:
    """One lifecycle rule per zone prefix, as S3 names the fields (prefixes never overlap,
    so no two rules compete for an object)."""
    rules = []
    for zone in zone_list:
        for prefix in zone.prefixes:
            rule: dict[str, Any] = {
                "ID": f"{zone.name}-{prefix.strip('/')}",
                "Prefix": lake_prefix + prefix,
                "NoncurrentDays": zone.noncurrent_days,
            }
            if zone.expire_days is not None:
                rule["ExpirationDays"] = zone.expire_days
            if zone.abort_multipart_days is not None:
                rule["AbortIncompleteMultipartUploadDays"] = zone.abort_multipart_days
            rules.append(rule)
    return rules


def _object_arn(bucket: str, pattern: str) -> str:
    return f"arn:aws:s3:::{bucket}/{pattern}"


def bucket_policy(
    bucket: str, lake_prefix: str, *, require_tls: bool, owner_arn: str | None = None
) -> dict[str, Any]:
    """Rules for every principal. Raw uploads' versions are never deleted by a request, only
    by lifecycle after RAW_RECOVERY_DAYS: a stolen key can hide an upload (delete marker) but
    not destroy it, and a deletion request is complete within those days. On MinIO, bucket
    policies govern anonymous requests; identities are limited by their IAM policies.

    TLS-only is two denies: ``aws:SecureTransport`` false (AWS, MinIO) and absent (radosgw sets
    it only on its TLS endpoint, so a ``Bool`` rule alone never bites there).

    ``owner_arn`` (radosgw): the bucket owner reads every object. There each object belongs
    to its uploader and ACLs, not bucket ownership, decide who reads it; without this the
    loop could not read a single vehicle upload. (S3 has BucketOwnerEnforced instead.)"""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RawVersionsExpireOnlyByLifecycle",
            "Effect": "Deny",
            "Principal": {"AWS": ["*"]},
            "Action": ["s3:DeleteObjectVersion"],
            "Resource": [_object_arn(bucket, f"{lake_prefix}{L.RAW_UPLOADS}*")],
        }
    ]
    if owner_arn:
        statements.append(
            {
                "Sid": "OwnerReadsEveryUpload",
                "Effect": "Allow",
                "Principal": {"AWS": [owner_arn]},
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": [_object_arn(bucket, "*")],
            }
        )
    if require_tls:
        for sid, condition in (
            ("TlsOnly", {"Bool": {"aws:SecureTransport": "false"}}),
            ("TlsOnlyWhereUnset", {"Null": {"aws:SecureTransport": "true"}}),
        ):
            statements.append(
                {
                    "Sid": sid,
                    "Effect": "Deny",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:*"],
                    "Resource": [f"arn:aws:s3:::{bucket}", _object_arn(bucket, "*")],
                    "Condition": condition,
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}


def vehicle_policy(bucket: str, lake_prefix: str, vehicle: str) -> dict[str, Any]:
    """What one vehicle's identity may do: upload into its own raw and telemetry prefixes
    (single PUT and multipart), read back and list its own raw uploads (the uploader looks
    for its keys to skip a committed drive and to resume), list in-progress multipart uploads
    (S3 cannot narrow that listing by prefix; it shows upload keys, never data) and read the
    release zone. Everything else is denied by default, and what object ownership would
    still grant (ACL changes, reading its telemetry back) is denied explicitly."""
    raw, telemetry = L.vehicle_upload_patterns(vehicle)
    own_raw = _object_arn(bucket, lake_prefix + raw)
    own_telemetry = _object_arn(bucket, lake_prefix + telemetry)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadOwnDrives",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [own_raw, own_telemetry],
            },
            {
                "Sid": "ReadOwnUploads",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [own_raw],
            },
            {
                "Sid": "ResumeUploads",
                "Effect": "Allow",
                "Action": ["s3:ListBucketMultipartUploads"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Sid": "ReadReleases",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [_object_arn(bucket, f"{lake_prefix}{L.ALL_RELEASES}*")],
            },
            {
                "Sid": "ListReleases",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{lake_prefix}{L.ALL_RELEASES}*"]}},
            },
            {
                # Without a listing grant, a HEAD of a missing key answers 403, not 404 (AWS
                # and radosgw): the uploader could not tell "not uploaded yet" from "denied".
                "Sid": "ListOwnUploads",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [lake_prefix + raw]}},
            },
            *_vehicle_denies(bucket, own_telemetry),
        ],
    }


PUBLIC_CANNED_ACLS = ("public-read", "public-read-write", "authenticated-read")
ACL_GRANTS = ("read", "write", "read-acp", "write-acp", "full-control")
"""The ``x-amz-grant-*`` headers: each gives an ACL grant to whoever it names."""


def _vehicle_denies(bucket: str, own_telemetry: str) -> list[dict[str, Any]]:
    """Explicit denies, because ownership grants what the allows do not: where the uploader
    owns its objects (radosgw, S3 without BucketOwnerEnforced) it could make them public
    (a canned ACL or a grant header on the upload, or PutObjectAcl afterwards) and read its
    telemetry back. Telemetry is write-only for a car: a stolen key must not reveal where that
    car has been. Bucket-level ACL and policy changes are the owner's alone already; denied
    here too so no server's defaults matter. Grants are matched with ``StringLike "*"``, not
    ``Null`` (radosgw 16 evaluates ``Null`` on these keys the wrong way round)."""
    everything = [f"arn:aws:s3:::{bucket}", _object_arn(bucket, "*")]
    return [
        {
            "Sid": "NoAclOrPolicyChanges",
            "Effect": "Deny",
            "Action": [
                "s3:PutObjectAcl",
                "s3:PutObjectVersionAcl",
                "s3:PutBucketAcl",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
            ],
            "Resource": everything,
        },
        {
            "Sid": "NoPublicUploads",
            "Effect": "Deny",
            "Action": ["s3:PutObject"],
            "Resource": everything,
            "Condition": {"StringEquals": {"s3:x-amz-acl": list(PUBLIC_CANNED_ACLS)}},
        },
        *(
            {
                "Sid": "NoGrant" + grant.title().replace("-", ""),
                "Effect": "Deny",
                "Action": ["s3:PutObject"],
                "Resource": everything,
                "Condition": {"StringLike": {f"s3:x-amz-grant-{grant}": ["*"]}},
            }
            for grant in ACL_GRANTS
        ),
        {
            "Sid": "TelemetryIsWriteOnly",
            "Effect": "Deny",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [own_telemetry],
        },
    ]


def vehicle_user(vehicle: str) -> str:
    """The access key (MinIO user, IAM user name) of a vehicle's upload identity."""
    return f"vehicle-{L.validate_id(vehicle, 'vehicle')}"


def vehicle_policy_name(vehicle: str) -> str:
    return f"dataloop-{vehicle_user(vehicle)}"
