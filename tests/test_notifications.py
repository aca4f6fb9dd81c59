"""Bucket notifications as the sensor's source at fleet scale: a real S3 server (moto) sends
its ObjectCreated events to a real SQS queue, subscribed by `dataloop infra bootstrap
--notify-queue`, and they name exactly the manifests, arrival hours and run keys that listing
the recent prefixes finds."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import pytest

from dataloop.defs.ingest.sensors import raw_upload_sensor
from dataloop.defs.resources import LakeResource
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests, plan_hour_runs
from dataloop.ingest.notifications import (
    HOUR_EDGE,
    Announced,
    announced_in,
    manifests_from_events,
    resolve,
)
from dataloop.ingest.queue_tick import QueueCursor
from dataloop.ingest.upload_queues import SqsUploadQueue
from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Store


@pytest.mark.skipif(
    bool(os.environ.get("DATALOOP_TEST_S3_ENDPOINT")),
    reason="MinIO announces to NATS/AMQP/Kafka targets configured on its server, not to SQS",
)
def test_notifications_name_the_same_manifests_hours_and_run_keys_as_listing(
    s3_endpoint, s3_lake, make_log, capsys, monkeypatch
):
    from dataloop.cli import main

    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"uploads-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    args = ["infra", "bootstrap", "--lake", s3_lake, "--endpoint", s3_endpoint]
    assert main([*args, "--notify-queue", arn, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notifications"] == arn

    store = S3Store.from_url(s3_lake)
    uploads = [
        upload_drive(store, make_log(vehicle="veh-1", drive="n1"), vehicle="veh-1"),
        upload_drive(store, make_log(vehicle="veh-2", drive="n2", seed=1), vehicle="veh-2"),
    ]
    store.put("telemetry/date=2026-05-01/vehicle=veh-1/t.json", b"{}")  # not a manifest
    queue = SqsUploadQueue(url, client=sqs)
    messages = queue.receive().messages
    bodies = [m.body for m in messages]
    # The server filtered by prefix and suffix: one event per manifest, none per log (and
    # S3's s3:TestEvent when the subscription was made, which carries no records).
    events = [json.loads(b) for b in bodies]
    assert len([e for e in events if "Records" in e]) == len(uploads)

    announced = manifests_from_events(store, bodies, store.prefix)
    listed, _ = find_new_manifests(store, ArrivalCursor())
    assert [o.key for o in announced] == sorted(u.manifest_key for u in uploads)
    assert [(o.key, o.last_modified) for o in announced] == [
        (o.key, o.last_modified) for o in listed
    ]
    assert plan_hour_runs(announced) == plan_hour_runs(listed)
    # What spares the sensor its HEADs holds on this server: an event's time is its object's
    # LastModified, to well within HOUR_EDGE.
    times = {a.key: a.event_time for b in bodies for a in announced_in(b, store.prefix)}
    gaps = [abs(times[o.key] - o.last_modified) for o in listed]
    assert max(gaps) < HOUR_EDGE / 10, gaps

    assert queue.acknowledge([m.handle for m in messages]) == 0
    assert queue.receive().messages == []

    # The sensor, pointed at the queue, requests the very runs listing plans from what S3
    # sent (the keys carry the lake's prefix inside the bucket).
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    for name, value in {
        "DATALOOP_UPLOAD_QUEUE": f"sqs:{url}",
        "DATALOOP_SQS_ENDPOINT": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    today = QueueCursor(reconciled=datetime.now(UTC).date().isoformat()).to_json()
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, cursor=today, resources={"lake": LakeResource(url=s3_lake)}
        ) as ctx,
    ):
        requests = raw_upload_sensor(ctx).run_requests
    assert sorted((r.partition_key, r.run_key) for r in requests) == sorted(
        (run.hour, run.run_key) for run in plan_hour_runs(listed)
    )


def test_an_event_clear_of_an_hours_edge_needs_no_head(tmp_path):
    """``resolve`` takes the hour from the event's time unless it is within HOUR_EDGE of an
    hour's edge or missing; those, and only those, are HEADed (a deleted one dropped)."""
    heads: list[str] = []

    class Counting(LocalStore):
        def head(self, key):
            heads.append(key)
            return super().head(key)

    store = Counting(tmp_path / "lake")
    hour = datetime(2026, 5, 1, 10, tzinfo=UTC)
    mid, edge, gone = (f"raw/date=2026-05-01/vehicle=v/{d}.manifest.json" for d in "meg")
    for key in (mid, edge):
        store.put(key, b"{}")
    heads.clear()  # (writing may look first)
    at_edge = hour + HOUR_EDGE / 2
    infos = resolve(
        store,
        [
            Announced(mid, hour + timedelta(minutes=30), 2, "e1"),
            Announced(edge, at_edge),
            Announced(gone),  # no time, and deleted since
        ],
    )
    assert set(heads) == {edge, gone}
    assert [(o.key, o.last_modified) for o in infos if o.key == mid] == [
        (mid, hour + timedelta(minutes=30))
    ]
    assert sorted(o.key for o in infos) == sorted([mid, edge])
