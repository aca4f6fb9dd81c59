"""The upload sensor on bucket notifications (``DATALOOP_UPLOAD_QUEUE``): a real SQS queue and
its dead-letter queue (moto's server over HTTP), the real sensor definition on a real
instance, and a lake whose manifests' arrival times are set. Messages are acknowledged only by
the tick after the one that requested their runs; redeliveries and duplicates request nothing
twice; bad messages are dead-lettered with their reason; the daily listing finds what a
notification missed."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import boto3
import dagster as dg
import pytest

from dataloop.defs.ingest.sensors import raw_upload_sensor
from dataloop.defs.resources import LakeResource
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests, plan_hour_runs
from dataloop.ingest.hour import ingest_hour
from dataloop.ingest.queue_tick import QueueCursor
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.layout import RawKeys
from dataloop.lake.local import LocalStore

# Older than the reconciling listing's grace (1 h), whatever minute the tests run at.
AT = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=30, second=0, microsecond=0)
TODAY = datetime.now(UTC).date().isoformat()
RECONCILED = QueueCursor(reconciled=TODAY).to_json()  # a cursor whose daily listing has run


def _backdate(store: LocalStore, key: str, at: datetime) -> None:
    os.utime(store.path(key), (at.timestamp(), at.timestamp()))


def _arrive(store: LocalStore, vehicle: str, drive: str, at: datetime) -> str:
    keys = RawKeys(at.date(), vehicle, drive)
    store.put(keys.manifest, b"{}")
    _backdate(store, keys.manifest, at)
    return keys.manifest


def _event(key: str, name: str = "ObjectCreated:Put") -> str:
    """An S3 event notification as S3 sends it to SQS (keys URL-encoded)."""
    record = {
        "eventName": name,
        "s3": {"bucket": {"name": "b"}, "object": {"key": quote_plus(key)}},
    }
    return json.dumps({"Records": [record]})


@pytest.fixture
def queue(moto_endpoint, monkeypatch):
    """A queue with a dead-letter queue in its redrive policy; the sensor pointed at it."""
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", f"sqs:{url}")
    monkeypatch.setenv("DATALOOP_SQS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    class Q:
        def send(self, *bodies: str) -> None:
            for body in bodies:
                sqs.send_message(QueueUrl=url, MessageBody=body)

        def counts(self) -> tuple[int, int]:
            """(visible, received and not yet acknowledged)"""
            a = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            return (
                int(a["ApproximateNumberOfMessages"]),
                int(a["ApproximateNumberOfMessagesNotVisible"]),
            )

        def dead(self) -> list[tuple[str, str]]:
            got = sqs.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            return [(m["Body"], m["MessageAttributes"]["reason"]["StringValue"]) for m in got]

    return Q()


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


def _evaluate(lake, cursor, instance):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(url=str(lake.root))}
    ) as ctx:
        result = raw_upload_sensor(ctx)
    return result.run_requests, result.cursor


def test_the_queue_requests_the_hours_listing_would_and_acknowledges_on_the_next_tick(lake, queue):
    hour_b = AT + timedelta(hours=1)
    keys = [
        _arrive(lake, "veh-1", "d1", AT),
        _arrive(lake, "veh-2", "d2", AT + timedelta(minutes=5)),
        _arrive(lake, "veh-1", "d3", hour_b),
    ]
    queue.send(*(_event(k) for k in keys))
    queue.send(_event(keys[0]))  # S3 delivers at least once: a duplicate
    queue.send(_event("raw/date=2026-01-01/vehicle=veh-1/d1.mcap"))  # not a manifest
    queue.send(_event(keys[2], name="ObjectRemoved:Delete"))  # not a creation
    queue.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))

    with dg.instance_for_test() as instance:
        requests, cursor = _evaluate(lake, RECONCILED, instance)
        listed, _ = find_new_manifests(lake, ArrivalCursor())
        # The same hours and run keys as listing: either path dedupes the other's runs.
        assert sorted((r.partition_key, r.run_key) for r in requests) == sorted(
            (run.hour, run.run_key) for run in plan_hour_runs(listed)
        )
        assert {r.partition_key: r.tags["dataloop/new_manifests"] for r in requests} == {
            L.utc_hour_key(AT): "2",
            L.utc_hour_key(hour_b): "1",
        }
        # Nothing is acknowledged before Dagster stored this tick's run requests.
        assert queue.counts() == (0, 7)
        pending = QueueCursor.from_json(cursor).pending
        assert pending and lake.exists(pending)

        again, cursor2 = _evaluate(lake, cursor, instance)
        assert again == []
        assert queue.counts() == (0, 0)
        assert not lake.exists(pending)
        assert QueueCursor.from_json(cursor2).pending is None


def test_redeliveries_request_nothing_twice(lake, queue, monkeypatch):
    monkeypatch.setenv("DATALOOP_QUEUE_VISIBILITY_S", "1")
    keys = [_arrive(lake, "veh-1", "d1", AT), _arrive(lake, "veh-2", "d2", AT)]
    queue.send(*(_event(k) for k in keys))
    with dg.instance_for_test() as instance:
        first, cursor = _evaluate(lake, RECONCILED, instance)
        assert len(first) == 1
        time.sleep(1.5)  # the messages are visible again

        # A tick whose results Dagster never stored: the same messages, the same run key
        # (the sensor daemon skips a run key it has already run).
        replay, _ = _evaluate(lake, RECONCILED, instance)
        assert [r.run_key for r in replay] == [r.run_key for r in first]
        time.sleep(1.5)

        # The next tick comes after the messages were redelivered (their first receipts
        # expired): the manifests the last tick requested are dropped, not requested again.
        after, cursor = _evaluate(lake, cursor, instance)
        assert after == []
        # ... and their new receipts are acknowledged by the tick after.
        _, cursor = _evaluate(lake, cursor, instance)
        assert queue.counts() == (0, 0)


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_rest_proceed(lake, queue):
    good = _arrive(lake, "veh-1", "d1", AT)
    bad = {
        "{not json": "not JSON",
        "[1, 2]": "a JSON list",
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}): "names no s3.object.key",
        json.dumps({"hello": "world"}): "no 'Records'",
    }
    queue.send(*bad, _event(good))
    with dg.instance_for_test() as instance:
        requests, cursor = _evaluate(lake, RECONCILED, instance)
        assert [r.partition_key for r in requests] == [L.utc_hour_key(AT)]
        dead = dict(queue.dead())
        assert set(dead) == set(bad)
        for body, expected in bad.items():
            assert expected in dead[body]
        assert queue.counts() == (0, 1)  # the dead-lettered originals are gone already
        _evaluate(lake, cursor, instance)
        assert queue.counts() == (0, 0)


def test_the_daily_listing_requests_what_a_notification_missed(lake, queue, make_log):
    from dataloop.fleet.uploader import upload_drive

    def upload(i: int) -> str:
        log = make_log(vehicle=f"v{i}", drive=f"q{i}", seed=i)
        u = upload_drive(lake, log, vehicle=f"v{i}", now=AT)  # keyed by its (backdated) day
        _backdate(lake, u.manifest_key, AT)
        return u.manifest_key

    hour = L.utc_hour_key(AT)
    queue.send(*(_event(upload(i)) for i in range(2)))
    with dg.instance_for_test() as instance:
        requests, cursor = _evaluate(lake, RECONCILED, instance)
        assert [(r.partition_key, r.tags["dataloop/new_manifests"]) for r in requests] == [
            (hour, "2")
        ]
        ingest_hour(lake, hour)  # the run it requested
        upload(2)  # a later upload into the same hour, whose notification is lost

        same_day, cursor = _evaluate(lake, cursor, instance)
        assert same_day == []  # the listing ran today already
        next_day = json.loads(cursor)
        next_day["queue"]["reconciled"] = (AT - timedelta(days=1)).date().isoformat()
        found, cursor = _evaluate(lake, json.dumps(next_day), instance)
        assert [(r.partition_key, r.tags["dataloop/new_manifests"]) for r in found] == [(hour, "1")]
        assert QueueCursor.from_json(cursor).reconciled == TODAY
        ingest_hour(lake, hour)
        assert sorted(d.drive for d in ledger.hour_drives(lake, hour)) == ["q0", "q1", "q2"]
        # Once the hour's record names it, the listing finds nothing more.
        next_day = json.loads(cursor)
        next_day["queue"]["reconciled"] = None
        assert _evaluate(lake, json.dumps(next_day), instance)[0] == []


def test_a_queue_setting_that_names_no_queue_says_what_it_expects(lake, monkeypatch):
    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", "kafka://broker/uploads")
    with dg.instance_for_test() as instance, pytest.raises(Exception, match="sqs:<queue URL>"):
        _evaluate(lake, None, instance)
