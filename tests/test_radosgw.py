"""What the fleet's identities may do, on a server that enforces IAM (Ceph radosgw, started by
tests/radosgw.py): bootstrap provisions one identity per vehicle, and one vehicle's identity,
used through the real uploader and raw S3 calls, is held to its own prefix. Also: the TLS-only
bucket rule over HTTPS, and committed-manifest notifications pushed to RabbitMQ and read by the
upload sensor."""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from botocore.exceptions import ClientError

from dataloop.defs.ingest.sensors import raw_upload_sensor
from dataloop.defs.resources import LakeResource
from dataloop.fleet.uploader import upload_drive
from dataloop.infra import policies as P
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests, plan_hour_runs
from dataloop.ingest.queue_tick import QueueCursor
from dataloop.ingest.upload_queues import open_queue
from dataloop.lake.layout import RawKeys
from dataloop.lake.s3 import S3Store
from tests.radosgw import Radosgw

PREFIX = "dataloop/"
ALL_USERS = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'


def _bootstrap(capsys, lake: str, endpoint: str, *args: str) -> dict[str, Any]:
    from dataloop.cli import main

    args = ("--lake", lake, "--endpoint", endpoint, *args, "--json")
    assert main(["infra", "bootstrap", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _fleet(capsys, tmp_path: Path, lake: str, gw: Radosgw, *vehicles: str) -> dict[str, dict]:
    """Bootstrap ``vehicles`` on the lake; their credentials, read from --credentials-out.
    Users are per server, not per bucket: each test names its own vehicles."""
    creds = tmp_path / "fleet-credentials.json"
    args = [a for v in vehicles for a in ("--vehicle", v)]
    _bootstrap(capsys, lake, gw.endpoint, *args, "--credentials-out", str(creds))
    return {c["vehicle"]: c for c in json.loads(creds.read_text())}


def _as(gw: Radosgw, cred: dict, *, https: bool = False):
    return gw.client(access_key=cred["access_key"], secret_key=cred["secret_key"], https=https)


def _use_identity(monkeypatch: pytest.MonkeyPatch, cred: dict) -> None:
    """Make the environment (and so ``dataloop`` commands) act as this identity."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", cred["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cred["secret_key"])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _bucket(lake: str) -> str:
    return lake.removeprefix("s3://").split("/")[0]


def _outcome(action: Callable[[], Any]) -> str:
    """ "allowed", "denied (...)" for a 403, else "error (...)": a missing key or a server
    error is no proof of a denial."""
    try:
        action()
    except ClientError as e:
        code = e.response["Error"].get("Code") or e.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"denied ({code})" if str(code) in ("AccessDenied", "403") else f"error ({code})"
    except urllib.error.HTTPError as e:
        return f"denied (HTTP {e.code})" if e.code == 403 else f"error (HTTP {e.code})"
    return "allowed"


def test_bootstrap_provisions_vehicles_once_and_never_rotates_a_secret(
    radosgw, radosgw_lake, tmp_path, capsys
):
    creds = tmp_path / "creds.json"
    args = ["--vehicle", "veh-p1", "--vehicle", "veh-p2", "--credentials-out", str(creds)]
    first = _bootstrap(capsys, radosgw_lake, radosgw.endpoint, *args)
    saved = json.loads(creds.read_text())
    second = _bootstrap(capsys, radosgw_lake, radosgw.endpoint, *args, "--vehicle", "veh-p3")

    assert first["identities"] == second["identities"] == "radosgw"
    assert [v["status"] for v in first["vehicles"]] == ["created", "created"]
    assert [v["status"] for v in second["vehicles"]] == ["exists", "exists", "created"]
    assert not any("secret_key" in v for v in first["vehicles"] + second["vehicles"])
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    after = {c["vehicle"]: c for c in json.loads(creds.read_text())}
    assert sorted(after) == ["veh-p1", "veh-p2", "veh-p3"]
    for old in saved:  # the second run kept every secret; the first ones still sign
        assert after[old["vehicle"]]["secret_key"] == old["secret_key"]
        assert _as(radosgw, old).list_multipart_uploads(Bucket=_bucket(radosgw_lake))
    iam = radosgw.client("iam")
    for vehicle in ("veh-p1", "veh-p3"):
        user, name = P.vehicle_user(vehicle), P.vehicle_policy_name(vehicle)
        assert iam.list_user_policies(UserName=user)["PolicyNames"] == [name]
        doc = iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        assert doc == P.vehicle_policy(_bucket(radosgw_lake), PREFIX, vehicle)


def test_one_vehicles_identity_is_held_to_its_own_prefix(
    radosgw, radosgw_lake, tmp_path, capsys, make_log, monkeypatch
):
    from dataloop.cli import main

    bucket = _bucket(radosgw_lake)
    creds = _fleet(capsys, tmp_path, radosgw_lake, radosgw, "veh-a", "veh-b")
    admin = radosgw.client()
    admin.put_object(Bucket=bucket, Key=f"{PREFIX}releases/targets/model.bin", Body=b"weights")
    store_b = S3Store(bucket, PREFIX, client=_as(radosgw, creds["veh-b"]))
    theirs = upload_drive(store_b, make_log(vehicle="veh-b", drive="b1"), vehicle="veh-b")

    # veh-a uploads a new drive through the command a car runs, with its own identity only.
    monkeypatch.setenv("DATALOOP_LAKE", radosgw_lake)
    _use_identity(monkeypatch, creds["veh-a"])
    log = make_log(vehicle="veh-a", drive="a1")
    assert main(["fleet", "upload", str(log), "--vehicle", "veh-a", "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert mine["status"] == "uploaded"
    car = _as(radosgw, creds["veh-a"])
    own_log, own_manifest = PREFIX + mine["log_key"], PREFIX + mine["manifest_key"]
    other_log = PREFIX + theirs.log_key
    day = datetime.now(UTC).date()
    other_new = PREFIX + RawKeys(day, "veh-b", "forged").log
    telemetry = f"{PREFIX}telemetry/date={day}/vehicle=veh-a/t.json"
    version = admin.head_object(Bucket=bucket, Key=own_log)["VersionId"]
    store_a = S3Store(bucket, PREFIX, client=car)

    def anonymous_get(key: str = own_log) -> None:
        urllib.request.urlopen(f"{radosgw.endpoint}/{bucket}/{key}", timeout=5)  # noqa: S310

    def public_multipart() -> None:
        """radosgw 16 evaluates no ACL condition here: the upload completes with its
        public-read ACL, and the bucket's IgnorePublicAcls must make that grant nothing."""
        key = f"{own}.m"
        up = car.create_multipart_upload(Bucket=bucket, Key=key, ACL="public-read")["UploadId"]
        part = car.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=b"x")
        done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
        car.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload=done)
        anonymous_get(key)

    put = partial(car.put_object, Bucket=bucket, Body=b"x")
    get = partial(car.get_object, Bucket=bucket)
    ls = partial(car.list_objects_v2, Bucket=bucket)
    owner_get = partial(admin.get_object, Bucket=bucket)
    delete = partial(car.delete_object, Bucket=bucket, Key=own_log)
    model = f"{PREFIX}releases/targets/model.bin"
    own = PREFIX + RawKeys(day, "veh-a", "extra").log
    public = {"Version": "2012-10-17", "Statement": []}
    b2 = make_log(vehicle="veh-b", drive="b2")
    rows: list[tuple[str, str, Callable[[], Any]]] = [
        ("allowed", "upload its own new drive (dataloop fleet upload)", lambda: mine),
        ("allowed", "write its own telemetry", lambda: put(Key=telemetry)),
        ("allowed", "read back its own upload", lambda: get(Key=own_manifest)),
        ("allowed", "read a release", lambda: get(Key=model)),
        ("allowed", "list releases", lambda: ls(Prefix=f"{PREFIX}releases/")),
        ("allowed", "lake owner reads the upload", lambda: owner_get(Key=own_log)),
        ("denied", "write another vehicle's prefix", lambda: put(Key=other_new)),
        ("denied", "upload a drive as another vehicle",
         lambda: upload_drive(store_a, b2, vehicle="veh-b")),
        ("denied", "read another vehicle's data", lambda: get(Key=other_log)),
        ("denied", "list the raw zone", lambda: ls(Prefix=f"{PREFIX}raw/")),
        ("denied", "list another vehicle's prefix", lambda: ls(Prefix=other_log)),
        ("denied", "delete a raw version (its own)", lambda: delete(VersionId=version)),
        ("denied", "delete a raw upload (its own)", lambda: delete()),
        ("denied", "lake owner deletes a raw version",
         lambda: admin.delete_object(Bucket=bucket, Key=own_log, VersionId=version)),
        ("denied", "write releases/", lambda: put(Key=model)),
        ("denied", "change the bucket policy",
         lambda: car.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public))),
        ("denied", "delete the bucket policy", lambda: car.delete_bucket_policy(Bucket=bucket)),
        ("denied", "make its upload public (PutObjectAcl)",
         lambda: car.put_object_acl(Bucket=bucket, Key=own_log, ACL="public-read")),
        ("denied", "upload with a public-read ACL", lambda: put(Key=f"{own}.p", ACL="public-read")),
        ("denied", "upload granting AllUsers", lambda: put(Key=f"{own}.g", GrantRead=ALL_USERS)),
        ("denied", "publish through a public-read multipart upload", public_multipart),
        ("denied", "read its own telemetry back", lambda: get(Key=telemetry)),
        ("denied", "anonymous read of its raw data", lambda: anonymous_get()),
    ]  # fmt: skip
    matrix = [(want, what, _outcome(action)) for want, what, action in rows]
    print("\nveh-a's identity on radosgw:")
    for want, what, got in matrix:
        flag = "" if got.startswith(want) else f"   <-- expected {want}"
        print(f"  {got:<26} {what}{flag}")
    assert [what for want, what, got in matrix if not got.startswith(want)] == []

    # A missing key of its own reads as absent (the uploader's check); another's stays loud.
    assert store_a.head(RawKeys(day, "veh-a", "never").manifest) is None
    with pytest.raises(ClientError):
        store_a.head(RawKeys(day, "veh-b", "never").manifest)
    # The upload is whole, the loop (the bucket owner) reads every byte of it, and the bucket
    # policy is still bootstrap's.
    assert admin.get_object(Bucket=bucket, Key=own_log)["Body"].read() == log.read_bytes()
    owner = f"arn:aws:iam:::user/{radosgw.access_key}"
    expected = P.bucket_policy(bucket, PREFIX, require_tls=False, owner_arn=owner)
    assert json.loads(admin.get_bucket_policy(Bucket=bucket)["Policy"]) == expected


def test_a_vehicle_resumes_an_interrupted_upload_with_its_own_identity(
    radosgw, radosgw_lake, tmp_path, capsys
):
    """Resume needs only what the vehicle policy grants: its multipart listing and parts."""
    from tests.test_uploader import PART, FlakyStore, Interrupted

    creds = _fleet(capsys, tmp_path, radosgw_lake, radosgw, "veh-r")
    store = S3Store(_bucket(radosgw_lake), PREFIX, client=_as(radosgw, creds["veh-r"]))
    path = tmp_path / "long-drive.mcap"
    path.write_bytes(os.urandom(PART * 2 + 777))
    with pytest.raises(Interrupted):
        upload_drive(FlakyStore(store, 1), path, vehicle="veh-r", part_size=PART)
    result = upload_drive(store, path, vehicle="veh-r", part_size=PART)
    assert (result.status, result.parts_reused, result.parts_sent) == ("resumed", 1, 2)
    again = upload_drive(store, path, vehicle="veh-r", part_size=PART)
    assert again.status == "already_uploaded"
    assert (
        radosgw.client().get_object(Bucket=store.bucket, Key=PREFIX + result.log_key)["Body"].read()
        == path.read_bytes()
    )


def test_tls_only_rule_holds_over_https_and_bites_over_http(
    radosgw, radosgw_lake, tmp_path, capsys, monkeypatch
):
    """radosgw leaves aws:SecureTransport unset over plain HTTP, so ``Bool false`` alone would
    let plain HTTP through; the policy's ``Null`` twin denies it. Bootstrap over HTTPS (the
    test's self-signed certificate) turns the rule on by itself."""
    monkeypatch.setenv("SSL_CERT_FILE", str(radosgw.ca_file))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(radosgw.ca_file))
    bucket = _bucket(radosgw_lake)
    creds = tmp_path / "creds.json"
    report = _bootstrap(
        capsys, radosgw_lake, radosgw.https_endpoint, "--vehicle", "veh-t",
        "--credentials-out", str(creds),
    )  # fmt: skip
    assert {"TlsOnly", "TlsOnlyWhereUnset"} <= set(report["bucket_policy_statements"])
    cred = json.loads(creds.read_text())[0]
    key = PREFIX + RawKeys(datetime.now(UTC).date(), "veh-t", "t1").manifest
    outcomes = {}
    for https in (True, False):
        car, admin = _as(radosgw, cred, https=https), radosgw.client(https=https)
        scheme = "https" if https else "http"
        outcomes[f"vehicle PUT over {scheme}"] = _outcome(
            lambda c=car, s=scheme: c.put_object(Bucket=bucket, Key=f"{key}.{s}", Body=b"{}")
        )
        outcomes[f"owner GET over {scheme}"] = _outcome(
            lambda a=admin, s=scheme: a.get_object(Bucket=bucket, Key=f"{key}.https")
        )
        outcomes[f"owner LIST over {scheme}"] = _outcome(
            lambda a=admin: a.list_objects_v2(Bucket=bucket, Prefix=PREFIX)
        )
    print("\nTLS-only bucket on radosgw:", json.dumps(outcomes, indent=1))
    assert {k: v.split(" ")[0] for k, v in outcomes.items()} == {
        "vehicle PUT over https": "allowed",
        "owner GET over https": "allowed",
        "owner LIST over https": "allowed",
        "vehicle PUT over http": "denied",
        "owner GET over http": "denied",
        "owner LIST over http": "denied",
    }


def test_a_committed_upload_reaches_the_sensor_through_rabbitmq_exactly_once(
    radosgw, radosgw_lake, rabbitmq, tmp_path, capsys, make_log, monkeypatch
):
    """radosgw pushes to a RabbitMQ stream (declared by bootstrap) and the real sensor, on the
    queue path with its daily listing already done, requests the upload's hour from it."""
    # A fresh gateway: radosgw 16 keeps its AMQP connections for the process's life, and one
    # that has pushed to another exchange of the same broker fails to connect to this one.
    radosgw.restart_gateway()
    with radosgw.crash_reported():
        _rabbitmq_push(radosgw, radosgw_lake, rabbitmq, tmp_path, capsys, make_log, monkeypatch)


def _rabbitmq_push(radosgw, radosgw_lake, rabbitmq, tmp_path, capsys, make_log, monkeypatch):
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    spec = rabbitmq.url(name, exchange=f"{name}-x")
    bucket = _bucket(radosgw_lake)
    creds = tmp_path / "creds.json"
    # radosgw takes a push endpoint with a password over HTTPS only, and says so over HTTP.
    from dataloop.cli import main

    refused = ["infra", "bootstrap", "--lake", radosgw_lake, "--endpoint", radosgw.endpoint]
    assert main([*refused, "--notify-endpoint", spec]) != 0
    assert "with a password over plain HTTP" in capsys.readouterr().err
    monkeypatch.setenv("SSL_CERT_FILE", str(radosgw.ca_file))
    report = _bootstrap(
        capsys, radosgw_lake, radosgw.https_endpoint, "--vehicle", "veh-n", "--no-require-tls",
        "--credentials-out", str(creds), "--notify-endpoint", spec,
    )  # fmt: skip
    assert report["notifications"].startswith("arn:aws:sns:")
    store = S3Store(bucket, PREFIX, client=_as(radosgw, json.loads(creds.read_text())[0]))
    result = upload_drive(store, make_log(vehicle="veh-n", drive="n1"), vehicle="veh-n")
    store.put(f"telemetry/date={datetime.now(UTC).date()}/vehicle=veh-n/t.json", b"{}")

    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", spec)
    cursor = QueueCursor(reconciled=datetime.now(UTC).date().isoformat()).to_json()
    requests: list = []
    # radosgw 16 looks for new persistent queues every 30 s: the first event of a new topic
    # takes up to that long (later ones are pushed within a second).
    deadline = time.monotonic() + 90  # 30 s discovery, with room for a loaded machine
    with dg.instance_for_test() as instance:
        while not requests and time.monotonic() < deadline:
            time.sleep(1)
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"lake": LakeResource(url=radosgw_lake)}
            ) as ctx:
                tick = raw_upload_sensor(ctx)
            requests, cursor = tick.run_requests, tick.cursor
    assert requests, f"no notification reached the sensor in 90 s\n{radosgw.gateway_log()}"
    listed, _ = find_new_manifests(
        S3Store(bucket, PREFIX, client=radosgw.client()), ArrivalCursor()
    )
    assert [(r.partition_key, r.run_key) for r in requests] == [
        (run.hour, run.run_key) for run in plan_hour_runs(listed)
    ]
    time.sleep(2)  # a duplicate (or the log's own event) would arrive by now
    events = [json.loads(m.body) for m in open_queue(spec).receive(100).messages]
    records = [r for e in events for r in e.get("Records", [])]
    assert [(r["eventName"], r["s3"]["object"]["key"]) for r in records] == [
        ("ObjectCreated:Put", PREFIX + result.manifest_key)
    ]
