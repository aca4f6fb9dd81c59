"""Deployment: the bucket bootstrap against real S3 servers (moto, or MinIO when
DATALOOP_TEST_S3_ENDPOINT is set; and Ceph radosgw, which enforces the per-vehicle policies:
tests/test_radosgw.py holds a vehicle to them), the policy documents evaluated key by key, and
the compose, dagster.yaml and Helm files checked statically (no Docker engine or Kubernetes
here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from dataloop.infra import policies as P
from dataloop.infra.pools import POOLS
from dataloop.lake.layout import RawKeys
from dataloop.quality.retention import NEVER_SWEPT

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
BUCKET, PREFIX = "dataloop", "lake/"


# -- policy documents, evaluated as S3 does: explicit deny > allow > implicit deny ---------
def _matches(statement: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    if not any(fnmatchcase(action, a) for a in statement["Action"]):
        return False
    if not any(fnmatchcase(resource, r) for r in statement["Resource"]):
        return False
    for op, conditions in statement.get("Condition", {}).items():
        assert op in ("StringLike", "StringEquals"), f"evaluator knows no {op}"
        for key, patterns in conditions.items():
            value = context.get(key)  # a key absent from the request matches nothing
            match = fnmatchcase if op == "StringLike" else str.__eq__
            if value is None or not any(match(value, p) for p in patterns):
                return False
    return True


def allowed(
    policy: dict,
    action: str,
    key: str | None = None,
    s3_prefix: str | None = None,
    **headers: str,
):
    """``headers``: request condition keys, ``x_amz_acl="public-read"`` for ``s3:x-amz-acl``."""
    resource = f"arn:aws:s3:::{BUCKET}" + (f"/{key}" if key is not None else "")
    context = {f"s3:{k.replace('_', '-')}": v for k, v in headers.items()}
    if s3_prefix is not None:
        context["s3:prefix"] = s3_prefix
    hits = [s for s in policy["Statement"] if _matches(s, action, resource, context)]
    return any(s["Effect"] == "Allow" for s in hits) and not any(
        s["Effect"] == "Deny" for s in hits
    )


def test_vehicle_policy_allows_its_own_prefix_and_nothing_else():
    policy = P.vehicle_policy(BUCKET, PREFIX, "veh-1")
    day = date(2026, 5, 1)
    own, other = RawKeys(day, "veh-1", "d1"), RawKeys(day, "veh-2", "d1")
    for key in (own.log, own.manifest, "telemetry/date=2026-05-01/vehicle=veh-1/t.json"):
        assert allowed(policy, "s3:PutObject", PREFIX + key), key
    for action in ("s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject"):
        assert allowed(policy, action, PREFIX + own.log), action
    assert allowed(policy, "s3:ListBucketMultipartUploads")  # resume needs the listing

    denied_writes = [
        other.log,
        other.manifest,
        "raw/date=2026-05-01/vehicle=veh-10/d1.mcap",  # a longer id with ours as its prefix
        # '*' for the date would match this key: another vehicle's prefix, ours nested in it
        "raw/date=2026-05-01/vehicle=veh-2/date=2026-05-01/vehicle=veh-1/d1.mcap",
        "raw/veh-1/d1.mcap",
        "telemetry/date=2026-05-01/vehicle=veh-2/t.json",
        "tables/imu/vehicle=veh-1/drive=d1/x.parquet",
        "ingest/drives/vehicle=veh-1/d1.json",
        "releases/targets/model.bin",
    ]
    for key in denied_writes:
        assert not allowed(policy, "s3:PutObject", PREFIX + key), key
    assert not allowed(policy, "s3:PutObject", own.log)  # outside the lake's prefix
    for key in (own.log, other.log):
        assert not allowed(policy, "s3:DeleteObject", PREFIX + key)
    assert not allowed(policy, "s3:GetObject", PREFIX + other.log)
    assert not allowed(policy, "s3:GetObject", PREFIX + "tables/imu/vehicle=veh-1/x.parquet")

    # The release zone: read-only.
    assert allowed(policy, "s3:GetObject", PREFIX + "releases/targets/model.bin")
    assert allowed(policy, "s3:ListBucket", s3_prefix=PREFIX + "releases/targets/")
    assert not allowed(policy, "s3:ListBucket", s3_prefix=PREFIX + "raw/")
    assert not allowed(policy, "s3:ListBucket")
    # Listing its own keys (a missing key then reads as absent, not 403), nobody else's.
    assert allowed(policy, "s3:ListBucket", s3_prefix=PREFIX + own.manifest)
    assert not allowed(policy, "s3:ListBucket", s3_prefix=PREFIX + other.manifest)
    assert not allowed(policy, "s3:ListBucket", s3_prefix=PREFIX + "raw/date=2026-05-01/")

    # What object ownership would grant is denied: no public upload, no ACL change, and
    # its telemetry is write-only.
    assert allowed(policy, "s3:PutObject", PREFIX + own.log, x_amz_acl="private")
    for acl in P.PUBLIC_CANNED_ACLS:
        assert not allowed(policy, "s3:PutObject", PREFIX + own.log, x_amz_acl=acl), acl
    for grant in P.ACL_GRANTS:
        header = {f"x_amz_grant_{grant.replace('-', '_')}": 'uri="...AllUsers"'}
        assert not allowed(policy, "s3:PutObject", PREFIX + own.log, **header), grant
    as_owner = {"Statement": [*policy["Statement"], _ALLOW_ALL]}  # what ownership grants
    for action in ("s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutBucketPolicy"):
        assert not allowed(as_owner, action, PREFIX + own.log), action
    telemetry = PREFIX + "telemetry/date=2026-05-01/vehicle=veh-1/t.json"
    assert not allowed(as_owner, "s3:GetObject", telemetry)
    assert allowed(as_owner, "s3:GetObject", PREFIX + own.log)


def test_bucket_policy_and_lifecycle_follow_the_zones():
    plain = P.bucket_policy(BUCKET, PREFIX, require_tls=False)
    assert [s["Sid"] for s in plain["Statement"]] == ["RawVersionsExpireOnlyByLifecycle"]
    # No credentials can destroy a raw upload's versions; other zones are not locked.
    admin = {"Statement": [*plain["Statement"], _ALLOW_ALL]}
    raw_key = PREFIX + "raw/date=2026-05-01/vehicle=v/d.mcap"
    assert not allowed(admin, "s3:DeleteObjectVersion", raw_key)
    assert allowed(admin, "s3:DeleteObjectVersion", PREFIX + "tables/x.parquet")
    assert allowed(admin, "s3:DeleteObject", raw_key)  # a delete marker: recoverable
    tls = P.bucket_policy(BUCKET, PREFIX, require_tls=True)
    # false on AWS and MinIO; absent on radosgw's plain-HTTP endpoint: both are denied
    assert [s["Condition"] for s in tls["Statement"][-2:]] == [
        {"Bool": {"aws:SecureTransport": "false"}},
        {"Null": {"aws:SecureTransport": "true"}},
    ]
    owned = P.bucket_policy(BUCKET, PREFIX, require_tls=False, owner_arn="arn:aws:iam:::user/o")
    (reads,) = [s for s in owned["Statement"] if s["Effect"] == "Allow"]  # the owner only
    assert reads["Principal"] == {"AWS": ["arn:aws:iam:::user/o"]}
    assert reads["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]

    rules = P.lifecycle_rules(PREFIX, P.zones())
    by_prefix = {r["Prefix"]: r for r in rules}
    assert len(by_prefix) == len(rules)
    retention = yaml.safe_load((REPO / "assets/quality/retention.yaml").read_text())["zones"]
    for zone in retention.values():
        for prefix in zone["prefixes"]:
            assert by_prefix[PREFIX + prefix]["ExpirationDays"] == zone["days"]
    assert by_prefix[PREFIX + "raw/"]["NoncurrentDays"] == P.RAW_RECOVERY_DAYS
    for prefix in (*NEVER_SWEPT, "releases/"):
        assert "ExpirationDays" not in by_prefix[PREFIX + prefix], prefix
    # No two rules compete for an object: no prefix lies inside another.
    assert not [(a, b) for a in by_prefix for b in by_prefix if a != b and b.startswith(a)]


_ALLOW_ALL = {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}


# -- bootstrap against a server -------------------------------------------------------------
def _bootstrap_cli(capsys, *args: str) -> dict[str, Any]:
    from dataloop.cli import main

    assert main(["infra", "bootstrap", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(params=["moto", "radosgw"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(kind, endpoint) of an S3 server, its admin credentials in the environment."""
    if request.param == "moto":  # MinIO instead when DATALOOP_TEST_S3_ENDPOINT names one
        kind = "minio" if os.environ.get("DATALOOP_TEST_S3_ENDPOINT") else "moto"
        return kind, request.getfixturevalue("s3_endpoint")
    gw = request.getfixturevalue("radosgw")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", gw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", gw.secret_key)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return "radosgw", gw.endpoint


def test_bootstrap_sets_bucket_rules_and_is_idempotent(server, tmp_path, capsys):
    """Versioning, lifecycle, bucket policy and identities, on moto and radosgw."""
    kind, s3_endpoint = server
    bucket = f"boot-{uuid.uuid4().hex[:10]}"
    vehicles = tmp_path / "vehicles.txt"
    vehicles.write_text("# fleet\nveh-1\n\nveh-2  # second car\n")
    args = ["--lake", f"s3://{bucket}/lake", "--endpoint", s3_endpoint]
    args += ["--vehicles-file", str(vehicles), "--policies-out", str(tmp_path / "iam")]
    first = _bootstrap_cli(capsys, *args)
    second = _bootstrap_cli(capsys, *args)

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    got = {
        r["Filter"]["Prefix"]: r
        for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    expected = P.lifecycle_rules(PREFIX, P.zones())
    assert set(got) == {r["Prefix"] for r in expected}
    for rule in expected:
        server = got[rule["Prefix"]]
        assert server["Status"] == "Enabled"
        assert server.get("Expiration", {}).get("Days") == rule.get("ExpirationDays")
        assert server["NoncurrentVersionExpiration"]["NoncurrentDays"] == rule["NoncurrentDays"]
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    owner = f"arn:aws:iam:::user/{os.environ['AWS_ACCESS_KEY_ID']}" if kind == "radosgw" else None
    assert policy == P.bucket_policy(bucket, PREFIX, require_tls=False, owner_arn=owner)
    assert first["public_access_block"] == second["public_access_block"] == "on"
    if kind == "radosgw":  # no such API in radosgw 16: its owner statement stands in
        assert first["object_ownership"].startswith("unsupported")
    else:
        assert first["object_ownership"] == "BucketOwnerEnforced"
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block["IgnorePublicAcls"] and block["RestrictPublicBuckets"]

    for name in ("veh-1", "veh-2"):
        written = json.loads((tmp_path / "iam" / f"{P.vehicle_policy_name(name)}.json").read_text())
        assert written == P.vehicle_policy(bucket, PREFIX, name)
    assert first["bucket_created"] and not second["bucket_created"]
    assert first["lifecycle_rules"] == second["lifecycle_rules"] == len(expected)
    if kind in ("minio", "radosgw"):  # identities were provisioned, once
        assert first["identities"] == second["identities"] == kind
        assert [v["status"] for v in first["vehicles"]] == ["created", "created"]
        assert [v["status"] for v in second["vehicles"]] == ["exists", "exists"]
        assert not any("secret_key" in v for v in second["vehicles"])
    else:  # moto: no admin API; the bucket part was still applied (checked above)
        assert first["identities"].startswith("skipped:")
        assert "no MinIO admin API" in first["identities"]
        assert "no radosgw Admin Ops API" in first["identities"]
        assert {v["status"] for v in first["vehicles"]} == {"skipped"}


def test_bootstrap_refuses_a_local_lake_and_a_bad_vehicle_id(tmp_path, capsys, monkeypatch):
    from dataloop.cli import main

    assert main(["infra", "bootstrap", "--lake", str(tmp_path)]) == 2
    assert "s3://" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bad = ["infra", "bootstrap", "--lake", "s3://b/lake", "--vehicle", "../veh-2"]
    assert main(bad) == 2
    assert "invalid vehicle id" in capsys.readouterr().err


@pytest.fixture
def enforcing_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A server that enforces IAM policies, its admin credentials in the environment: MinIO
    when DATALOOP_TEST_S3_ENDPOINT names one (root credentials in AWS_*), else radosgw (moto
    accepts every request)."""
    if os.environ.get("DATALOOP_TEST_S3_ENDPOINT"):
        return request.getfixturevalue("s3_endpoint")
    gw = request.getfixturevalue("radosgw")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", gw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", gw.secret_key)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return gw.endpoint


def test_a_vehicle_cannot_write_another_vehicles_prefix(enforcing_server, make_log, capsys):
    """The uploader itself, with one vehicle's identity (tests/test_radosgw.py has the whole
    allow/deny matrix on radosgw)."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from dataloop.fleet.uploader import upload_drive
    from dataloop.lake.s3 import S3Store

    s3_endpoint = enforcing_server
    bucket = f"fleet-{uuid.uuid4().hex[:10]}"
    lake = ["--lake", f"s3://{bucket}/lake", "--endpoint", s3_endpoint]
    report = _bootstrap_cli(capsys, *lake, "--vehicle", "veh-x1", "--vehicle", "veh-x2")
    creds = {v["vehicle"]: v for v in report["vehicles"]}
    admin = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    admin.put_object(Bucket=bucket, Key="lake/releases/targets/model.bin", Body=b"weights")

    def client_of(vehicle: str):
        return boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds[vehicle]["access_key"],
            aws_secret_access_key=creds[vehicle]["secret_key"],
            config=Config(s3={"addressing_style": "path"}),
        )

    car_a = client_of("veh-x1")
    store_a = S3Store(bucket, "lake", client=car_a)
    own = upload_drive(store_a, make_log(vehicle="veh-x1", drive="a1"), vehicle="veh-x1")
    assert own.status == "uploaded"
    with pytest.raises(ClientError) as denied:  # the same uploader, another vehicle's prefix
        upload_drive(store_a, make_log(vehicle="veh-x2", drive="b1"), vehicle="veh-x2")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        car_a.put_object(Bucket=bucket, Key="lake/releases/targets/model.bin", Body=b"evil")
    with pytest.raises(ClientError):
        car_a.get_object(Bucket=bucket, Key=own.log_key.replace("veh-x1", "veh-x2"))
    assert car_a.get_object(Bucket=bucket, Key="lake/releases/targets/model.bin")["Body"].read()
    store_b = S3Store(bucket, "lake", client=client_of("veh-x2"))
    assert upload_drive(store_b, make_log(vehicle="veh-x2", drive="b1"), vehicle="veh-x2").status


# -- docker compose ----------------------------------------------------------------------
def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _code_env_names() -> set[str]:
    """Every DATALOOP_* variable the code reads."""
    text = "\n".join(p.read_text() for p in (REPO / "dataloop").rglob("*.py"))
    return set(re.findall(r"\b(DATALOOP_[A-Z0-9_]+)\b", text))


def _instance_env_names() -> set[str]:
    return set(re.findall(r"\{env: ([A-Z0-9_]+)\}", (INFRA / "dagster.yaml").read_text()))


def test_compose_services_references_and_environment():
    services = _compose()["services"]
    assert {"minio", "postgres", "code-location", "dagster-webserver", "dagster-daemon"} <= set(
        services
    )
    declared_volumes = set(_compose()["volumes"])
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot job"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        if "build" in svc:
            context = (INFRA / svc["build"]["context"]).resolve()
            assert context == REPO
            assert (context / svc["build"]["dockerfile"]).is_file()

    code_vars = _code_env_names()
    for name, svc in services.items():
        env = svc.get("environment", {})
        unknown = {k for k in env if k.startswith("DATALOOP_")} - code_vars
        assert not unknown, f"{name} sets variables no code reads: {unknown}"
        if any("dagster.yaml" in v for v in svc.get("volumes", [])):
            missing = _instance_env_names() - set(env)
            assert not missing, f"{name} lacks {missing} for dagster.yaml"
            assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"

    pg = services["postgres"]["environment"]
    minio = services["minio"]
    for name in ("code-location", "lake-bootstrap"):
        env = services[name]["environment"]
        assert env["DATALOOP_LAKE"].startswith("s3://")
        endpoint = env["DATALOOP_S3_ENDPOINT"]
        host, port = endpoint.removeprefix("http://").split(":")
        assert host == "minio" and any(p.startswith(f"{port}:") for p in minio["ports"])
        assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    env = services["code-location"]["environment"]
    assert env["DAGSTER_POSTGRES_HOST"] in services
    assert (env["DAGSTER_POSTGRES_USER"], env["DAGSTER_POSTGRES_PASSWORD"]) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
    )
    assert env["DAGSTER_POSTGRES_DB"] == pg["POSTGRES_DB"]


def test_compose_commands_and_workspace_agree():
    from dataloop.cli import build_parser
    from dataloop.daemon import LOCATION_NAME
    from dataloop.infra.bootstrap import read_vehicles

    services = _compose()["services"]
    grpc = shlex.split(services["code-location"]["command"])
    assert grpc[:3] == ["dagster", "api", "grpc"]
    assert grpc[grpc.index("-m") + 1] == "dataloop.definitions"
    assert grpc[grpc.index("--location-name") + 1] == LOCATION_NAME
    workspace = yaml.safe_load((INFRA / "workspace.yaml").read_text())
    (server,) = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert server["host"] == "code-location"
    assert str(server["port"]) == grpc[grpc.index("--port") + 1]
    assert server["location_name"] == LOCATION_NAME
    for name in ("dagster-webserver", "dagster-daemon"):
        command = shlex.split(services[name]["command"])
        assert command[command.index("-w") + 1] == "/opt/dagster/dagster_home/workspace.yaml"

    # The one-shot jobs run our own commands, with arguments the parser accepts.
    boot = shlex.split(services["lake-bootstrap"]["command"])
    args = build_parser().parse_args(boot[1:])
    assert args.func.__name__ == "cmd_bootstrap"
    assert read_vehicles(REPO / args.vehicles_file.removeprefix("/opt/dataloop/"))
    init = services["dagster-init"]["command"]
    assert "dagster instance migrate" in init
    assert build_parser().parse_args(["infra", "pools"]).func.__name__ == "cmd_pools"

    dockerfile = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    rules = re.search(r"DATALOOP_RULES=(\S+)", dockerfile)[1]
    assert rules == "/opt/dataloop/assets" and "COPY assets/ assets/" in dockerfile


# -- dagster.yaml ------------------------------------------------------------------------
def _instance_config(tmp_path: Path, text: str) -> dict:
    from dagster._core.instance.config import dagster_instance_config

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(home))
    return config


def test_dagster_yaml_loads_through_dagsters_schema(tmp_path):
    from dagster._config import validate_config
    from dagster._core.run_coordinator import QueuedRunCoordinator

    from dataloop.definitions import defs

    config = _instance_config(tmp_path, (INFRA / "dagster.yaml").read_text())
    storages = {
        k: config[k]["class"] for k in ("run_storage", "event_log_storage", "schedule_storage")
    }
    assert storages == {
        "run_storage": "PostgresRunStorage",
        "event_log_storage": "PoolSafePostgresEventLogStorage",  # pool slots claimed once (#19)
        "schedule_storage": "PostgresScheduleStorage",
    }
    assert "storage" not in config
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert validate_config(
        QueuedRunCoordinator.config_type(), config["run_coordinator"]["config"]
    ).success
    assert config["telemetry"] == {"enabled": False}
    assert config["sensors"]["use_threads"] and config["backfills"]["use_threads"]
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    stages = {lim["value"] for lim in limits if lim["key"] == "dataloop/stage"}
    assert {"ingest", "simulation", "training"} <= stages

    # The ingest job's stage tag is the one the limit names.
    assert defs().resolve_job_def("ingest_job").tags["dataloop/stage"] == "ingest"
    # Every pool an asset uses is stored at deploy time (`dataloop infra pools`): concurrent
    # first claims of a pool without a stored limit race in Postgres (a failed run).
    graph = defs().resolve_asset_graph()
    used = {pool for key in graph.get_all_asset_keys() for pool in graph.get(key).pools or ()}
    assert used, "no asset declares a pool"
    assert used <= set(POOLS), f"add {used - set(POOLS)} to dataloop/infra/pools.py POOLS"


# -- Helm --------------------------------------------------------------------------------
# The keys of the official chart's values (dagster/dagster 1.13, values.schema.json) that
# these values may set, per section. The chart's schema is not available offline; this is the
# documented subset we rely on (`helm lint` against the chart checks the rest).
CHART_KEYS: dict[str, set[str]] = {
    "": {
        "global", "generatePostgresqlPasswordSecret", "postgresql", "dagsterWebserver",
        "dagster-user-deployments", "runLauncher", "dagsterDaemon", "additionalInstanceConfig",
        "computeLogManager", "retention", "telemetry", "imagePullSecrets", "serviceAccount",
        "scheduler", "pythonLogs", "ingress", "migrate", "busybox", "rabbitmq", "redis", "flower",
        "generateCeleryConfigSecret",
    },
    "global": {
        "postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName",
    },
    "postgresql": {
        "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword", "image",
        "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
    },
    "dagsterWebserver": {
        "replicaCount", "image", "resources", "env", "envConfigMaps", "envSecrets", "service",
        "workspace", "nodeSelector", "affinity", "tolerations", "annotations", "labels",
        "readinessProbe", "livenessProbe", "startupProbe", "enableReadOnly", "logLevel",
    },
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "dagster-user-deployments.deployments[]": {
        "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
        "port", "env", "envConfigMaps", "envSecrets", "resources", "nodeSelector", "affinity",
        "tolerations", "labels", "annotations", "volumes", "volumeMounts", "readinessProbe",
    },
    "runLauncher": {"type", "config"},
    "runLauncher.config": {"k8sRunLauncher", "celeryK8sRunLauncher", "customRunLauncher"},
    "dagsterDaemon": {
        "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
        "envSecrets", "resources", "runMonitoring", "runRetries", "sensors", "schedules",
        "nodeSelector", "affinity", "tolerations", "annotations", "labels",
    },
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runCoordinator.config": {"queuedRunCoordinator", "customRunCoordinator"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": {
        "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
        "dequeueUseThreads", "dequeueNumWorkers", "blockOpConcurrencyLimitedRuns",
    },
    "computeLogManager": {"type", "config"},
    "computeLogManager.config": {"s3ComputeLogManager", "gcsComputeLogManager"},
    "computeLogManager.config.s3ComputeLogManager": {
        "bucket", "localDir", "prefix", "useSsl", "verify", "endpointUrl", "region",
        "skipEmptyFiles", "uploadInterval", "showUrlOnly",
    },
    "retention": {"enabled", "sensor", "schedule", "autoMaterialize"},
    "telemetry": {"enabled"},
}  # fmt: skip


def _helm() -> dict:
    return yaml.safe_load((INFRA / "helm" / "values.yaml").read_text())


def _at(values: dict, path: str) -> list[dict]:
    nodes = [values]
    for part in [p for p in path.split(".") if p]:
        many = part.endswith("[]")
        nodes = [n[part.removesuffix("[]")] for n in nodes if part.removesuffix("[]") in n]
        nodes = [x for n in nodes for x in n] if many else nodes
    return nodes


def _snake(value: Any) -> Any:
    """The chart's camelCase keys as Dagster's snake_case config keys."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in value.items()}
    return [_snake(v) for v in value] if isinstance(value, list) else value


def test_helm_values_use_only_the_charts_keys():
    values = _helm()
    for path, keys in CHART_KEYS.items():
        for node in _at(values, path):
            assert set(node) <= keys, f"{path or 'top level'}: {set(node) - keys}"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert {"name", "image", "port"} <= set(deployment)
    assert deployment["image"]["pullPolicy"] in ("Always", "IfNotPresent", "Never")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["postgresql"]["enabled"] is False  # external Postgres
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_helm_values_make_a_valid_instance_and_run_launcher(tmp_path, monkeypatch):
    """Render the instance settings the chart builds from these values (storage, run
    coordinator, daemon, additionalInstanceConfig) and validate them with Dagster's schema;
    the run launcher and the step executor against dagster-k8s's."""
    from dagster._config import validate_config
    from dagster_k8s import K8sRunLauncher, k8s_job_executor

    from dataloop.daemon import LOCATION_NAME
    from dataloop.infra.executors import k8s_executor_config, stage_executor

    values = _helm()
    daemon = values["dagsterDaemon"]
    pg = values["postgresql"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": pg["postgresqlHost"],
                    "username": pg["postgresqlUsername"],
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "db_name": pg["postgresqlDatabase"],
                    "port": pg["service"]["port"],
                    "params": pg["postgresqlParams"],
                    "scheme": pg["postgresqlScheme"],
                }
            }
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # as the chart's _run-coordinator.tpl renders it: -1 when no maximum is given
            "config": {"max_concurrent_runs": -1, **_snake(queued)},
        },
        "run_monitoring": _snake(daemon["runMonitoring"]),
        "run_retries": _snake(daemon["runRetries"]),
        "sensors": _snake(daemon["sensors"]),
        "schedules": _snake(daemon["schedules"]),
        "telemetry": values["telemetry"],
        **values["additionalInstanceConfig"],
    }
    config = _instance_config(tmp_path, yaml.safe_dump(instance))
    dagster_yaml = yaml.safe_load((INFRA / "dagster.yaml").read_text())
    assert pg["postgresqlScheme"] == dagster_yaml["run_storage"]["config"]["postgres_db"]["scheme"]
    # The same run limits as compose's instance, sized up.
    helm_limits = {(t["key"], str(t.get("value"))) for t in queued["tagConcurrencyLimits"]}
    yaml_limits = dagster_yaml["concurrency"]["runs"]["tag_concurrency_limits"]
    assert helm_limits == {(t["key"], str(t.get("value"))) for t in yaml_limits}
    assert "concurrency" not in config  # would conflict with the rendered run coordinator

    launcher = _snake(values["runLauncher"]["config"]["k8sRunLauncher"])
    launcher["env_secrets"] = [s["name"] for s in launcher["env_secrets"]]
    launcher["run_k8s_config"] = launcher.pop("run_k8s_config")
    launcher["run_k8s_config"]["job_spec_config"] = values["runLauncher"]["config"][
        "k8sRunLauncher"
    ]["runK8sConfig"]["jobSpecConfig"]  # Kubernetes' own camelCase stays
    launcher.update(
        instance_config_map="dagster-instance", dagster_home="/opt/dagster/dagster_home"
    )
    checked = validate_config(K8sRunLauncher.config_type(), launcher)
    assert checked.success, checked.errors

    executor = validate_config(k8s_job_executor.config_schema.config_type, k8s_executor_config())
    assert executor.success, executor.errors
    assert stage_executor().name == "in_process"
    monkeypatch.setenv("DATALOOP_EXECUTOR", "k8s")
    assert stage_executor().name == "k8s_step_executor"

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["name"] == LOCATION_NAME
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dataloop.definitions"]
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets == {
        s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    }
    assert secrets == set(k8s_executor_config()["env_secrets"])
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert set(env) - {"AWS_REGION"} <= _code_env_names()
    # The executor settings the values carry: a pod per step, the hour's shards through S3.
    from dagster_aws.s3 import S3PickleIOManager

    from dataloop.defs.resources import s3_resource, step_io_manager
    from dataloop.infra.executors import hour_shards

    for name in ("DATALOOP_EXECUTOR", "DATALOOP_HOUR_SHARDS", "DATALOOP_LAKE"):
        monkeypatch.setenv(name, env[name])
    assert stage_executor().name == "k8s_step_executor" and hour_shards() == 16
    assert isinstance(step_io_manager(s3_resource()), S3PickleIOManager)
    # Step logs land in the lake bucket, in a zone that has a lifecycle rule.
    lake_bucket, _, lake_prefix = env["DATALOOP_LAKE"].removeprefix("s3://").partition("/")
    logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    assert logs["bucket"] == lake_bucket
    zone_prefixes = [lake_prefix + "/" + p for z in P.zones() for p in z.prefixes]
    assert any(logs["prefix"].startswith(p.rstrip("/")) for p in zone_prefixes)


def test_vehicles_file_refuses_an_id_that_escapes_its_prefix(tmp_path):
    from dataloop.infra.bootstrap import read_vehicles

    assert read_vehicles(INFRA / "vehicles.example.txt") == ["veh-0001", "veh-0002"]
    (tmp_path / "v.txt").write_text("veh-1\nveh-1/../veh-2\n")
    with pytest.raises(ValueError, match="invalid vehicle id"):
        read_vehicles(tmp_path / "v.txt")


def test_heavy_jobs_take_their_executor_from_the_one_switch(tmp_path, make_log):
    """ingest_job under DATALOOP_EXECUTOR=multiprocess, as `dagster job execute` runs it in a
    fresh process: it succeeds, and each step ran in a process of its own (in process, every
    step shares the run's pid)."""
    import subprocess
    import sys

    import dagster as dg
    from dagster import DagsterEventType, DagsterRunStatus

    from dataloop.fleet.uploader import upload_drive
    from dataloop.lake.layout import HOUR_FORMAT
    from dataloop.lake.local import LocalStore

    store = LocalStore(tmp_path / "lake")
    up = upload_drive(store, make_log(vehicle="veh-x", drive="mp", seconds=2.0), vehicle="veh-x")
    arrived = store.head(up.manifest_key).last_modified
    hour = arrived.replace(minute=0).strftime(HOUR_FORMAT)
    home = tmp_path / "dagster"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATALOOP_LAKE": str(store.root)}
    env.update(DATALOOP_EXECUTOR="multiprocess")
    env.pop("DATALOOP_RULES", None)
    command = ["job", "execute", "-m", "dataloop.definitions", "-j", "ingest_job"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *command, "--tags",
         json.dumps({"dagster/partition": hour})],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == hour
        logs = instance.all_logs(run.run_id)
        starts = [
            e.dagster_event for e in logs if e.dagster_event_type == DagsterEventType.STEP_START
        ]
        assert "decoded_drives.ingest_shard[shard_0]" in {s.step_key for s in starts}
        assert len(starts) >= 3
        assert len({s.pid for s in starts}) == len(starts), [(s.step_key, s.pid) for s in starts]

    # Every heavy job follows the switch; the light ones stay in process.
    show = (
        "from dataloop.definitions import defs; d = defs(); print(*[d.resolve_job_def(j)"
        ".executor_def.name for j in ('ingest_job', 'curation_job', 'training_job', "
        "'dataset_job', 'release_job')])"
    )
    names = subprocess.run(
        [sys.executable, "-c", show], env=env, cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert names == ["multiprocess"] * 3 + ["in_process"] * 2
