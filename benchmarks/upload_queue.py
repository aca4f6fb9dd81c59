"""One upload-sensor tick with 10,000 pending bucket notifications, against listing the same
manifests (the baseline, measured in the same run), over real servers: the lake on moto's S3
server (its own process, so it does not share this one's GIL) and the events on a RabbitMQ
stream (Debian's broker, as tests/rabbitmq.py starts it) or on moto's SQS.

    python benchmarks/upload_queue.py [--events 10000] [--queue amqp|sqs] [--json]

Prints the seconds of: the listing tick (the baseline); the queue tick that reads every
message and plans the hour runs, and the next tick that acknowledges them, with events as
servers send them (with their time: a HEAD only near an hour's edge); the queue tick when no
event has a time (every manifest HEADed); each as a ratio to the baseline and to Dagster's
60 s sensor timeout. Goal: the queue
ticks finish well inside the timeout. moto's SQS answers a receive in O(queued messages)
(~0.5 s per call at 1,000), so measure SQS at ~1,000 events: it shows moto, not the sensor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote_plus

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import free_port, stop_group  # noqa: E402

SENSOR_TIMEOUT_S = 60


def _tick(lake_url: str, cursor: str | None) -> tuple[float, list[tuple[str, str]], str | None]:
    import dagster as dg

    from dataloop.defs.ingest.sensors import raw_upload_sensor
    from dataloop.defs.resources import LakeResource

    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"lake": LakeResource(url=lake_url)}
        ) as ctx,
    ):
        t0 = time.perf_counter()
        result = raw_upload_sensor(ctx)
        runs = sorted((str(r.partition_key), str(r.run_key)) for r in result.run_requests)
        return time.perf_counter() - t0, runs, result.cursor


def _event(key: str, at: datetime | None) -> str:
    """The event a server sends for a PUT it stored at ``at``."""
    record: dict = {
        "eventName": "ObjectCreated:Put",
        "s3": {"object": {"key": quote_plus(key), "size": 2}},
    }
    if at is not None:
        record["eventTime"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"Records": [record]})


def _moto(stack: ExitStack) -> str:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stack.callback(stop_group, proc, 10)
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _sqs(endpoint: str, bodies: list[str], track) -> tuple[str, object]:
    """A queue holding ``bodies``; returns its spec and a count of what is left in it."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=f"uploads-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    batches = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]

    def send(batch: list[str]) -> None:
        entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(batch)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    with ThreadPoolExecutor(16) as pool:
        list(track(pool.map(send, batches), "events", len(batches)))

    def left(_cursor: str | None) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(v) for v in attrs.values())

    return f"sqs:{url}", left


def _rabbitmq(stack: ExitStack):
    from tests.rabbitmq import start

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dataloop-rabbitmq-")))
    broker, proc = start(root)
    stack.callback(stop_group, proc, 15)
    return broker


def _amqp(broker, bodies: list[str], track) -> tuple[str, object]:
    """A stream holding ``bodies``; returns its spec and a count of what is left to read."""
    import amqp

    from dataloop.ingest.queue_tick import QueueCursor
    from dataloop.ingest.upload_queues import AmqpTarget, declare_upload_stream

    spec = broker.url(f"uploads-{uuid.uuid4().hex[:8]}")
    target = AmqpTarget.parse(spec)
    declare_upload_stream(target)
    with amqp.Connection(host=f"{broker.host}:{broker.port}") as conn:
        channel = conn.channel()
        for body in track(bodies, "events"):
            channel.basic_publish(amqp.Message(body), exchange=target.exchange, routing_key="b")

    def left(cursor: str | None) -> int:
        return len(bodies) - (QueueCursor.from_json(cursor).offset or 0)

    return spec, left


def measure(events: int = 10_000, queue: str = "amqp") -> dict:
    """The ticks' seconds and ratios (see the module's docstring), and whether every tick
    requested listing's runs and left nothing unconsumed."""
    import boto3
    from rich.progress import track

    from dataloop.ingest.queue_tick import QueueCursor
    from dataloop.lake.layout import RawKeys
    from dataloop.lake.s3 import S3Store

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with ExitStack() as stack:
        endpoint = _moto(stack)
        os.environ["DATALOOP_S3_ENDPOINT"] = os.environ["DATALOOP_SQS_ENDPOINT"] = endpoint
        bucket = f"lake-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        lake_url = f"s3://{bucket}/dataloop"
        store = S3Store.from_url(lake_url)

        # The fleet's last hours: committed manifests of 100 vehicles.
        day = datetime.now(UTC).date()
        keys = [
            RawKeys(day, f"veh-{i % 100:03d}", f"drive-{i:05d}").manifest for i in range(events)
        ]

        def put(key: str) -> datetime:
            store.put(key, b"{}")
            return datetime.now(UTC)

        with ThreadPoolExecutor(16) as pool:
            stored = list(track(pool.map(put, keys), "manifests", len(keys)))
        broker = _rabbitmq(stack) if queue == "amqp" else None

        def queue_ticks(bodies: list[str]) -> tuple[float, float, list, int]:
            """A queue holding ``bodies``: its receiving tick, the next (acknowledging)
            tick, the runs requested, and the messages left unconsumed."""
            fill = partial(_amqp, broker) if broker else partial(_sqs, endpoint)
            os.environ["DATALOOP_UPLOAD_QUEUE"], left = fill(bodies, track)
            today = QueueCursor(reconciled=datetime.now(UTC).date().isoformat())
            receive_s, runs, cursor = _tick(lake_url, today.to_json())
            ack_s, _, cursor = _tick(lake_url, cursor)
            return receive_s, ack_s, runs, left(cursor)

        listing_s, listing_runs, _ = _tick(lake_url, None)
        # Events as servers send them, with their time (one HEAD only near an hour's edge)...
        timed = [_event(store.prefix + k, at) for k, at in zip(keys, stored, strict=True)]
        receive_s, ack_s, queue_runs, left_in_queue = queue_ticks(timed)
        # ... and without it: every manifest HEADed, the sensor's worst case.
        untimed = [_event(store.prefix + k, None) for k in keys]
        headed_s, _, headed_runs, headed_left = queue_ticks(untimed)

    return {
        "queue": queue,
        "events": events,
        "listing_tick_s": round(listing_s, 2),
        "queue_tick_s": round(receive_s, 2),
        "ack_tick_s": round(ack_s, 2),
        "all_headed_tick_s": round(headed_s, 2),
        "queue_vs_listing": round(receive_s / listing_s, 2),
        "all_headed_vs_listing": round(headed_s / listing_s, 2),
        "queue_tick_of_timeout": round(receive_s / SENSOR_TIMEOUT_S, 3),
        "ack_tick_of_timeout": round(ack_s / SENSOR_TIMEOUT_S, 3),
        "all_headed_tick_of_timeout": round(headed_s / SENSOR_TIMEOUT_S, 3),
        "runs": len(listing_runs),
        "same_runs_as_listing": queue_runs == listing_runs == headed_runs,
        "left_in_queue": left_in_queue + headed_left,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--queue", choices=["amqp", "sqs"], default="amqp")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(args.events, args.queue)
    if args.json:
        print(json.dumps(rows))
    else:
        for name, value in rows.items():
            print(f"{name:>24}  {value}")
    return 0 if rows["same_runs_as_listing"] and rows["left_in_queue"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
