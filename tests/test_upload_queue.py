"""The upload sensor on bucket notifications (``DATALOOP_UPLOAD_QUEUE``), on a real SQS queue
with its dead-letter queue (moto's server over HTTP) and on a real RabbitMQ stream (Debian's
broker): the real sensor definition on a real instance, and a lake whose manifests' arrival
times are set. Messages count as consumed only by the tick after the one that requested their
runs (SQS: deleted then; a stream: the offset in the stored cursor); redeliveries and
duplicates request nothing twice; bad messages are dead-lettered with their reason; the daily
listing finds what a notification missed."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import amqp
import boto3
import dagster as dg
import pytest

from dataloop.defs.ingest.sensors import raw_upload_sensor
from dataloop.defs.resources import LakeResource
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests, plan_hour_runs
from dataloop.ingest.hour import ingest_hour
from dataloop.ingest.queue_tick import QueueCursor
from dataloop.ingest.upload_queues import AmqpTarget, declare_upload_stream
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


def _event(key: str, name: str = "ObjectCreated:Put", at: datetime | None = None) -> str:
    """An S3 event notification as S3 sends it to SQS (keys URL-encoded), with its time."""
    record = {
        "eventName": name,
        "s3": {"bucket": {"name": "b"}, "object": {"key": quote_plus(key)}},
    }
    if at is not None:
        record["eventTime"] = at.isoformat().replace("+00:00", "Z")
    return json.dumps({"Records": [record]})


class SqsQueue:
    """A queue with a dead-letter queue in its redrive policy (moto over HTTP)."""

    kind = "sqs"

    def __init__(self, endpoint: str) -> None:
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        name = f"uploads-{uuid.uuid4().hex[:8]}"
        self.dlq = self.sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 5}
        self.url = self.sqs.create_queue(
            QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)}
        )["QueueUrl"]
        self.spec = f"sqs:{self.url}"

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def counts(self) -> tuple[int, int]:
        """(visible, received and not yet acknowledged)"""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        a = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        return int(a[names[0]]), int(a[names[1]])

    def dead(self) -> list[tuple[str, str]]:
        got = self.sqs.receive_message(
            QueueUrl=self.dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return [(m["Body"], m["MessageAttributes"]["reason"]["StringValue"]) for m in got]


class StreamQueue:
    """A RabbitMQ stream, fed through a topic exchange as radosgw publishes (a real broker)."""

    kind = "amqp"

    def __init__(self, broker) -> None:
        name = f"uploads-{uuid.uuid4().hex[:8]}"
        self.spec = broker.url(name, exchange=f"{name}-x")
        self.target = AmqpTarget.parse(self.spec)
        declare_upload_stream(self.target)

    def _connect(self) -> amqp.Connection:
        return amqp.Connection(host=f"{self.target.host}:{self.target.port}")

    def send(self, *bodies: str) -> None:
        with self._connect() as conn:
            channel = conn.channel()
            for body in bodies:
                channel.basic_publish(
                    amqp.Message(body), exchange=self.target.exchange, routing_key="dataloop-b"
                )

    def dead(self) -> list[tuple[str, str]]:
        out = []
        with self._connect() as conn:
            channel = conn.channel()
            while (m := channel.basic_get(self.target.dead_letter_queue, no_ack=True)) is not None:
                out.append(
                    (m.body.decode() if isinstance(m.body, bytes) else m.body, m.headers["reason"])
                )
        return out


def _sqs(endpoint: str, monkeypatch) -> SqsQueue:
    monkeypatch.setenv("DATALOOP_SQS_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return SqsQueue(endpoint)


@pytest.fixture(params=["sqs", "amqp"])
def queue(request, monkeypatch):
    """The sensor pointed at a fresh queue of each kind."""
    if request.param == "sqs":
        q = _sqs(request.getfixturevalue("moto_endpoint"), monkeypatch)
    else:
        q = StreamQueue(request.getfixturevalue("rabbitmq"))
    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", q.spec)
    return q


@pytest.fixture
def sqs_queue(moto_endpoint, monkeypatch) -> SqsQueue:
    q = _sqs(moto_endpoint, monkeypatch)
    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", q.spec)
    return q


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
    edge = hour_b.replace(minute=0) + timedelta(seconds=20)
    keys = [
        _arrive(lake, "veh-1", "d1", AT),
        _arrive(lake, "veh-2", "d2", AT + timedelta(minutes=5)),
        _arrive(lake, "veh-1", "d3", hour_b),
        _arrive(lake, "veh-3", "d4", edge),
    ]
    # Events with their time (as servers send them), one without, and one stamped a second
    # before the hour its object's LastModified is in: near an hour's edge, the HEAD decides.
    queue.send(_event(keys[0]), _event(keys[1], at=AT + timedelta(minutes=5)))
    queue.send(_event(keys[2], at=hour_b), _event(keys[3], at=edge - timedelta(seconds=21)))
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
            L.utc_hour_key(hour_b): "2",
        }
        pending = QueueCursor.from_json(cursor).pending
        assert pending and lake.exists(pending)
        # Nothing is acknowledged before Dagster stored this tick's run requests and cursor.
        if queue.kind == "sqs":
            assert queue.counts() == (0, 8)
        else:  # the stream keeps them; the cursor holds the offset past them
            assert QueueCursor.from_json(cursor).offset == 8

        again, cursor2 = _evaluate(lake, cursor, instance)
        assert again == []
        if queue.kind == "sqs":
            assert queue.counts() == (0, 0)
        assert QueueCursor.from_json(cursor2).offset == QueueCursor.from_json(cursor).offset
        assert not lake.exists(pending)
        assert QueueCursor.from_json(cursor2).pending is None


def test_sqs_redeliveries_request_nothing_twice(lake, sqs_queue, monkeypatch):
    """SQS redelivers what a tick received once its visibility timeout passes (the stream's
    case is the last test)."""
    queue = sqs_queue
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
        if queue.kind == "sqs":
            assert queue.counts() == (0, 1)  # the dead-lettered originals are gone already
        _, cursor = _evaluate(lake, cursor, instance)
        if queue.kind == "sqs":
            assert queue.counts() == (0, 0)
        assert queue.dead() == []  # dead-lettered once, not again by the next tick


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
    with (
        dg.instance_for_test() as instance,
        pytest.raises(Exception, match="'sqs:<queue URL>' or 'amqp://"),
    ):
        _evaluate(lake, None, instance)


def test_a_stream_rereads_what_an_unstored_tick_read_and_drops_pushed_duplicates(
    lake, rabbitmq, monkeypatch
):
    """A RabbitMQ stream: a tick whose cursor Dagster never stored is read again from the
    stored offset, with the same run keys; a duplicate push (radosgw delivers at least once)
    after a stored tick requests nothing."""
    queue = StreamQueue(rabbitmq)
    monkeypatch.setenv("DATALOOP_UPLOAD_QUEUE", queue.spec)
    keys = [_arrive(lake, "veh-1", "d1", AT), _arrive(lake, "veh-2", "d2", AT)]
    queue.send(_event(keys[0]))
    with dg.instance_for_test() as instance:
        first, cursor = _evaluate(lake, RECONCILED, instance)
        queue.send(_event(keys[1]))
        lost, _ = _evaluate(lake, cursor, instance)  # its cursor is never stored
        replay, cursor = _evaluate(lake, cursor, instance)
        assert [r.run_key for r in replay] == [r.run_key for r in lost]
        assert [r.tags["dataloop/new_manifests"] for r in first + replay] == ["1", "1"]
        assert first[0].run_key != replay[0].run_key

        queue.send(_event(keys[1]), _event(keys[1]))
        again, cursor = _evaluate(lake, cursor, instance)
        assert again == []
        assert QueueCursor.from_json(cursor).offset == 4
