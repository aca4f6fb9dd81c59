"""No credential appears in logs, Dagster's event log and storage, or the lake: known secrets
are planted in the environment, the loop runs (upload, ingest, quality, labels, mining and
a dataset, through Dagster, against S3 over HTTP), then every byte they could reach is
scanned."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import boto3
import dagster as dg

from dataloop.lake.s3 import S3Store
from tests.faults.loop import LoopRun, audit, process_lake, upload_logs

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED7Q3XZ5W2",
    "AWS_SECRET_ACCESS_KEY": "pLaNtEd/SeCrEt+kEy/9f8e7d6c5b4a3f2e1d0c9b8a",
    "AWS_SESSION_TOKEN": "planted-session-token-5c1e0f4e2b",
    "DAGSTER_POSTGRES_PASSWORD": "planted-pg-password-31f9a2",
    "DAGSTER_PG_PASSWORD": "planted-pg-password-31f9a2",
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_no_secret_reaches_logs_events_or_the_lake(
    s3_endpoint, monkeypatch, tmp_path, caplog, capfd, make_log
):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATALOOP_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"secrets-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/lake"
    caplog.set_level(logging.INFO)
    for name in ("dataloop", "dagster"):
        caplog.set_level(logging.DEBUG, logger=name)

    logs = [("veh-9", "sec-1", make_log(vehicle="veh-9", drive="sec-1", seed=9))]
    store = S3Store.from_url(url)
    upload_logs(store, logs, LoopRun())
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        process_lake(url, LoopRun(), instance=instance)
        events = [
            repr(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)
        ]
    assert audit(store, logs).processed == 1

    lake = {
        o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
    }
    dagster_files = _files(home)
    out, err = capfd.readouterr()
    places = {
        "captured logs": caplog.text.encode(),
        "stdout/stderr": (out + err).encode(),
        "dagster events": "\n".join(events).encode(),
        **{f"dagster storage {k}": v for k, v in dagster_files.items()},
        **{f"lake {k}": v for k, v in lake.items()},
    }
    # The scan sees what the loop wrote: the drive id is in each kind of place.
    for kind in ("captured logs", "dagster events", "lake"):
        assert any(b"sec-1" in v for k, v in places.items() if k.startswith(kind)), kind
    assert any(k.endswith(".db") for k in dagster_files), "the event log's SQLite is scanned"
    leaks = [
        (where, name)
        for where, data in places.items()
        for name, secret in SECRETS.items()
        if secret.encode() in data
    ]
    assert leaks == []
