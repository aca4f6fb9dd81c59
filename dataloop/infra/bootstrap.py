"""`dataloop infra bootstrap`: make the lake bucket what the loop expects, with the minio SDK.

Creates the bucket, turns versioning on (for the raw zone; see ``policies``), sets one
lifecycle rule per zone and the bucket policy, and creates one upload identity per vehicle: on
MinIO a user + policy through its admin API, on Ceph radosgw a user through the Admin Ops API
with an inline IAM policy (``infra/radosgw.py``). The server kind is detected, not asked. Every
step is idempotent: a second run changes nothing and never rotates an existing vehicle's secret.

On AWS S3 (or any server without either admin API, such as moto) the bucket part is applied
and the identity part is skipped with a message: create IAM users or roles yourself with the
documents ``--policies-out`` writes (infra/README.md).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dataloop.infra.policies import (
    Zone,
    bucket_policy,
    lifecycle_rules,
    vehicle_policy,
    vehicle_policy_name,
    vehicle_user,
    zones,
)
from dataloop.infra.radosgw import RadosgwAdmin, RadosgwError
from dataloop.lake import layout as L
from dataloop.lake.layout import validate_id


class BootstrapError(Exception):
    """The bucket could not be brought to the expected state (message says why)."""


@dataclass
class Target:
    """Where the lake is: endpoint (host:port), TLS, bucket, key prefix, admin credentials."""

    endpoint: str
    secure: bool
    bucket: str
    prefix: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @property
    def is_aws(self) -> bool:
        return self.endpoint.endswith("amazonaws.com")

    @classmethod
    def from_env(cls, lake: str | None = None, endpoint: str | None = None) -> Target:
        """From ``DATALOOP_LAKE`` (s3://bucket/prefix), ``DATALOOP_S3_ENDPOINT`` and the
        ``AWS_*`` credentials, the same variables the lake itself reads."""
        lake = lake or os.environ.get("DATALOOP_LAKE", "")
        if not lake.startswith("s3://"):
            raise BootstrapError(f"the lake must be s3://bucket/prefix, not {lake!r}")
        bucket, _, prefix = lake.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        url = endpoint or os.environ.get("DATALOOP_S3_ENDPOINT") or "https://s3.amazonaws.com"
        parsed = urlparse(url if "://" in url else f"http://{url}")
        key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (bucket and parsed.netloc and key and secret):
            raise BootstrapError(
                "need a bucket, an endpoint and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "(the MinIO root user or an S3 admin)"
            )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
        return cls(
            parsed.netloc,
            parsed.scheme == "https",
            bucket,
            prefix,
            key,
            secret,
            region or "us-east-1",
        )


@dataclass
class BootstrapReport:
    bucket: str
    prefix: str
    bucket_created: bool = False
    versioning: str = ""
    lifecycle_rules: int = 0
    bucket_policy_statements: list[str] = field(default_factory=list)
    identities: str = ""  # "minio"/"radosgw" when vehicles were provisioned, else why not
    vehicles: list[dict[str, Any]] = field(default_factory=list)
    policies_written: list[str] = field(default_factory=list)
    public_access_block: str = ""  # "on", or why the server has none
    object_ownership: str = ""  # "BucketOwnerEnforced", or why the server has none
    notifications: str = ""  # the queue or topic ARN committed manifests are announced to


def read_vehicles(path: Path) -> list[str]:
    """Vehicle ids, one per line; blank lines and ``#`` comments ignored."""
    ids = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(validate_id(line, "vehicle"))
    return ids


def _lifecycle_config(target: Target, zone_list: list[Zone]):
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import (
        AbortIncompleteMultipartUpload,
        Expiration,
        LifecycleConfig,
        NoncurrentVersionExpiration,
        Rule,
    )

    rules = []
    for spec in lifecycle_rules(target.prefix, zone_list):
        abort = spec.get("AbortIncompleteMultipartUploadDays")
        rules.append(
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=spec["Prefix"]),
                rule_id=spec["ID"],
                expiration=Expiration(days=spec["ExpirationDays"])
                if "ExpirationDays" in spec
                else None,
                noncurrent_version_expiration=NoncurrentVersionExpiration(
                    noncurrent_days=spec["NoncurrentDays"]
                ),
                abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(abort)
                if abort
                else None,
            )
        )
    return LifecycleConfig(rules)


def _subscribe(client, target: Target, queue_arn: str) -> None:
    """Announce every committed manifest (``raw/...manifest.json`` created) to a queue: SQS on
    S3, a NATS/AMQP/Kafka target on MinIO (``arn:minio:sqs::ID:kafka``). Replaces the
    bucket's notification configuration; S3 also needs the queue's policy to let S3 send."""
    from minio.notificationconfig import (
        NotificationConfig,
        PrefixFilterRule,
        QueueConfig,
        SuffixFilterRule,
    )

    config = QueueConfig(
        ["s3:ObjectCreated:*"],
        config_id="dataloop-committed-manifests",
        prefix_filter_rule=PrefixFilterRule(f"{target.prefix}{L.RAW_UPLOADS}"),
        suffix_filter_rule=SuffixFilterRule(L.MANIFEST_SUFFIX),
        queue=queue_arn,
    )
    client.set_bucket_notification(target.bucket, NotificationConfig(queue_config_list=[config]))


PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
RADOSGW_PUBLIC_ACCESS_BLOCK = {
    **PUBLIC_ACCESS_BLOCK,
    # radosgw 16 refuses every PUT under BlockPublicAcls, ACL header or not, and counts our
    # own wildcard-principal denies as a public policy (so bootstrap could not run twice).
    # IgnorePublicAcls alone keeps every public ACL from granting a read.
    "BlockPublicAcls": False,
    "BlockPublicPolicy": False,
}


def _s3_client(target: Target):
    """boto3 for the calls the minio SDK lacks (public access block, object ownership)."""
    import boto3
    from botocore.config import Config

    scheme = "https" if target.secure else "http"
    return boto3.client(
        "s3",
        endpoint_url=None if target.is_aws else f"{scheme}://{target.endpoint}",
        region_name=target.region,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        verify=os.environ.get("SSL_CERT_FILE") or os.environ.get("AWS_CA_BUNDLE"),
        config=Config(
            s3={"addressing_style": "path"}, request_checksum_calculation="when_required"
        ),
    )


def _unsupported(e: Exception, codes: tuple[str, ...]) -> str | None:
    from botocore.exceptions import ClientError

    code = e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""
    return code if code in codes else None


def _block_public_access(s3, target: Target, *, radosgw: bool) -> str:
    """Make public ACLs and policies grant nothing, whoever owns an object. The vehicle policy
    denies public ACLs too, but radosgw 16 evaluates no ACL condition on
    CreateMultipartUpload: without this block a car could still publish a raw upload.
    AWS and radosgw have the API; MinIO, which has no ACLs, answers NotImplemented."""
    wanted = RADOSGW_PUBLIC_ACCESS_BLOCK if radosgw else PUBLIC_ACCESS_BLOCK
    try:
        s3.put_public_access_block(Bucket=target.bucket, PublicAccessBlockConfiguration=wanted)
    except Exception as e:
        if code := _unsupported(e, ("NotImplemented", "501")):
            return f"unsupported by {target.endpoint} ({code})"
        raise
    got = s3.get_public_access_block(Bucket=target.bucket)["PublicAccessBlockConfiguration"]
    if got != wanted:
        raise BootstrapError(f"the server kept a different public access block: {got}")
    return "on"


def _enforce_bucket_ownership(s3, target: Target) -> str:
    """Where the server can (AWS S3), the bucket owns every object and ACLs are off: no
    uploader keeps rights over what it wrote. radosgw 16 and MinIO lack the API; on radosgw
    the bucket policy's owner statement and the explicit denies stand in for it."""
    try:
        s3.put_bucket_ownership_controls(
            Bucket=target.bucket,
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
    except Exception as e:
        if code := _unsupported(e, ("NotImplemented", "501", "InvalidArgument", "InvalidRequest")):
            return f"unsupported by {target.endpoint} ({code})"
        raise
    return "BucketOwnerEnforced"


def _radosgw(target: Target) -> RadosgwAdmin | None:
    """radosgw's admin client when the endpoint is a radosgw."""
    if target.is_aws:
        return None
    scheme = "https" if target.secure else "http"
    gw = RadosgwAdmin(
        f"{scheme}://{target.endpoint}", target.access_key, target.secret_key, target.region
    )
    try:
        return gw if gw.probe() else None
    except RadosgwError as e:
        raise BootstrapError(str(e)) from e


def _admin(target: Target):
    """MinIO's admin client, or the reason there is none (AWS, moto, other S3 servers)."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException

    if target.is_aws:
        return None, "AWS S3 has no MinIO admin API: create IAM identities from --policies-out"
    admin = MinioAdmin(
        endpoint=target.endpoint,
        credentials=StaticProvider(target.access_key, target.secret_key),
        secure=target.secure,
        region=target.region,
    )
    try:
        admin.info()
    except MinioAdminException as e:
        if e._code in ("404", "405", "501"):  # no such API here: not a MinIO server
            return None, (
                f"{target.endpoint} has no MinIO admin API (HTTP {e._code}) and no radosgw "
                "Admin Ops API: bucket rules applied, vehicle identities skipped; create them "
                "with your IAM"
            )
        raise BootstrapError(f"MinIO admin API refused the credentials: {e}") from e
    return admin, ""


def _provision_vehicle(admin, target: Target, vehicle: str) -> dict[str, Any]:
    """Create (or keep) the vehicle's user, and set its policy; new users get a secret."""
    from minio.error import MinioAdminException

    user = vehicle_user(vehicle)
    name = vehicle_policy_name(vehicle)
    admin.policy_add(name, policy=vehicle_policy(target.bucket, target.prefix, vehicle))
    entry: dict[str, Any] = {"vehicle": vehicle, "access_key": user, "policy": name}
    try:
        admin.user_info(user)
        entry["status"] = "exists"
    except MinioAdminException as e:
        if e._code != "404" and "NoSuchUser" not in e._body:
            raise
        secret = secrets.token_urlsafe(30)
        admin.user_add(user, secret)
        entry.update(status="created", secret_key=secret)
    admin.policy_set(name, user=user)  # replaces the mapping: idempotent
    return entry


def _provision_on_radosgw(gw: RadosgwAdmin, target: Target, vehicle: str) -> dict[str, Any]:
    """Create (or keep) the vehicle's radosgw user and set its inline policy; a new user gets
    a secret, an existing one keeps its keys."""
    user = vehicle_user(vehicle)
    name = vehicle_policy_name(vehicle)
    entry: dict[str, Any] = {"vehicle": vehicle, "access_key": user, "policy": name}
    if gw.user_exists(user):
        entry["status"] = "exists"
    else:
        entry.update(status="created", secret_key=gw.create_user(user, f"dataloop {vehicle}"))
    gw.put_user_policy(user, name, vehicle_policy(target.bucket, target.prefix, vehicle))
    return entry


def bootstrap(
    target: Target,
    vehicles: list[str],
    *,
    retention_file: Path | None = None,
    policies_out: Path | None = None,
    require_tls: bool | None = None,
    notify_queue: str | None = None,
    notify_endpoint: str | None = None,
) -> BootstrapReport:
    """Bring the bucket and the vehicles' identities to the expected state.

    ``notify_queue``: an SQS (or MinIO target) ARN; ``notify_endpoint``: on radosgw, the
    http(s)/amqp/kafka endpoint its topic pushes committed-manifest events to."""
    from minio import Minio
    from minio.versioningconfig import ENABLED, VersioningConfig

    for v in vehicles:
        validate_id(v, "vehicle")
    client = Minio(
        target.endpoint,
        access_key=target.access_key,
        secret_key=target.secret_key,
        secure=target.secure,
        region=target.region,
    )
    report = BootstrapReport(target.bucket, target.prefix)
    if not client.bucket_exists(target.bucket):
        client.make_bucket(target.bucket)
        report.bucket_created = True
    client.set_bucket_versioning(target.bucket, VersioningConfig(ENABLED))
    report.versioning = client.get_bucket_versioning(target.bucket).status
    zone_list = zones(retention_file)
    client.set_bucket_lifecycle(target.bucket, _lifecycle_config(target, zone_list))
    report.lifecycle_rules = len(client.get_bucket_lifecycle(target.bucket).rules)
    gw = _radosgw(target)
    tls = target.secure if require_tls is None else require_tls
    owner = gw.owner_arn(target.bucket) if gw else None
    policy = bucket_policy(target.bucket, target.prefix, require_tls=tls, owner_arn=owner)
    client.set_bucket_policy(target.bucket, json.dumps(policy))
    applied = json.loads(client.get_bucket_policy(target.bucket))
    report.bucket_policy_statements = [s.get("Sid", "") for s in applied["Statement"]]
    s3 = _s3_client(target)
    report.public_access_block = _block_public_access(s3, target, radosgw=gw is not None)
    report.object_ownership = _enforce_bucket_ownership(s3, target)

    if notify_endpoint and gw is None:
        raise BootstrapError("--notify-endpoint needs radosgw; use --notify-queue elsewhere")
    if notify_endpoint and gw:
        report.notifications = gw.subscribe(
            target.bucket, f"{target.prefix}{L.RAW_UPLOADS}", L.MANIFEST_SUFFIX, notify_endpoint
        )
    elif notify_queue:
        _subscribe(client, target, notify_queue)
        report.notifications = notify_queue

    if policies_out:
        policies_out.mkdir(parents=True, exist_ok=True)
        for v in vehicles:
            path = policies_out / f"{vehicle_policy_name(v)}.json"
            path.write_text(
                json.dumps(vehicle_policy(target.bucket, target.prefix, v), indent=1) + "\n"
            )
            report.policies_written.append(str(path))

    if gw:
        report.identities = "radosgw"
        report.vehicles = [_provision_on_radosgw(gw, target, v) for v in vehicles]
        return report
    admin, why_not = _admin(target)
    if admin is None:
        report.identities = f"skipped: {why_not}"
        report.vehicles = [
            {"vehicle": v, "access_key": vehicle_user(v), "status": "skipped"} for v in vehicles
        ]
        return report
    report.identities = "minio"
    report.vehicles = [_provision_vehicle(admin, target, v) for v in vehicles]
    return report
