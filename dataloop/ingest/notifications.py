"""New uploads from bucket notifications instead of listing (the fleet-scale path;
docs/scaling.md).

S3 sends ``s3:ObjectCreated:*`` events to SQS; MinIO to NATS, AMQP, Kafka or a webhook. All of
them carry the S3 event JSON (``{"Records": [...]}``). ``dataloop infra bootstrap
--notify-queue ARN`` subscribes the queue to committed manifests only (prefix ``raw/``, suffix
``.manifest.json``). Each event becomes the same ``ObjectInfo`` that listing returns, with the
object's own LastModified (one HEAD), so ``plan_hour_runs`` assigns the same arrival hour and
run key whichever path found the manifest.

Delivery is at least once: messages are acknowledged (deleted) only after the runs they led
to are recorded; a redelivered manifest plans a run that skips drives already ingested.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from dataloop.lake import layout as L
from dataloop.lake.store import ObjectInfo, ObjectStore


def manifest_keys_from_events(
    bodies: Iterable[str | dict[str, Any]], lake_prefix: str
) -> list[str]:
    """Lake keys (without the lake prefix) of manifests created, from S3 event messages;
    other events, other objects and S3's ``s3:TestEvent`` are ignored."""
    found: set[str] = set()
    for body in bodies:
        event = json.loads(body) if isinstance(body, str) else body
        for record in event.get("Records", []):
            if not str(record.get("eventName", "")).startswith(
                ("ObjectCreated", "s3:ObjectCreated")
            ):
                continue
            key = unquote_plus(record["s3"]["object"]["key"])
            if not key.startswith(lake_prefix):
                continue
            key = key[len(lake_prefix) :]
            parsed = L.parse_raw_key(key)
            if parsed is not None and parsed.is_manifest:
                found.add(key)
    return sorted(found)


def manifests_from_events(
    store: ObjectStore, bodies: Iterable[str | dict[str, Any]], lake_prefix: str
) -> list[ObjectInfo]:
    """The manifests the events name, as listing would return them (deleted ones dropped)."""
    infos = [store.head(key) for key in manifest_keys_from_events(bodies, lake_prefix)]
    return sorted((i for i in infos if i is not None), key=lambda o: (o.last_modified, o.key))


class SqsUploadQueue:
    """An SQS queue of bucket notifications: receive a batch, acknowledge it later."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        import boto3

        self.queue_url = queue_url
        self.client = client or boto3.client(
            "sqs",
            endpoint_url=os.environ.get("DATALOOP_SQS_ENDPOINT") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
        )

    def receive(self, max_messages: int = 1000) -> tuple[list[str], list[str]]:
        """Up to ``max_messages`` message bodies and their receipt handles (no waiting)."""
        bodies: list[str] = []
        handles: list[str] = []
        while len(bodies) < max_messages:
            resp = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(bodies)),
                WaitTimeSeconds=0,
            )
            messages = resp.get("Messages", [])
            if not messages:
                break
            bodies += [m["Body"] for m in messages]
            handles += [m["ReceiptHandle"] for m in messages]
        return bodies, handles

    def acknowledge(self, handles: list[str]) -> None:
        for start in range(0, len(handles), 10):
            batch = handles[start : start + 10]
            self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
            )
