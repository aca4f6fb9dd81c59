"""New uploads from bucket notifications instead of listing (the fleet-scale path;
docs/scaling.md).

S3 sends ``s3:ObjectCreated:*`` events to SQS; MinIO to NATS, AMQP, Kafka or a webhook. All of
them carry the S3 event JSON (``{"Records": [...]}``). ``dataloop infra bootstrap
--notify-queue ARN`` subscribes the queue to committed manifests only (prefix ``raw/``, suffix
``.manifest.json``). Each event becomes the same ``ObjectInfo`` that listing returns, with the
object's own LastModified (one HEAD), so ``plan_hour_runs`` assigns the same arrival hour and
run key whichever path found the manifest.

With ``DATALOOP_UPLOAD_QUEUE`` set, ``raw_upload_sensor`` drains the queue each tick
(``drain_queue``):

- a message is acknowledged only by the *next* tick, once Dagster has stored the run requests
  and the cursor of the tick that received it (its receipt handle waits in a small object of
  the lake that the cursor names; the queue keeps it invisible meanwhile);
- the manifests the last tick requested are dropped when redelivered, and the run keys
  (``HourRun.run_key``) dedupe whole batches planned twice;
- a message that is no S3 event is dead-lettered with its reason and acknowledged;
- once a day the recent upload days are listed, and manifests that no hour's ingest record
  names are requested (``discovery.unrecorded_manifests``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote_plus

from dataloop.ingest.discovery import unrecorded_manifests
from dataloop.lake import layout as L
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectInfo, ObjectStore

VISIBILITY_S = 900
"""How long a received message stays invisible to other receivers: longer than the ticks until
the one that acknowledges it (``DATALOOP_QUEUE_VISIBILITY_S``)."""
MAX_MESSAGES = 10_000
"""Messages one tick receives at most (``DATALOOP_QUEUE_MAX_MESSAGES``)."""


class BadMessage(ValueError):
    """A queue message that is not an S3 event notification."""


def manifest_keys_of(body: str | dict[str, Any], lake_prefix: str) -> list[str]:
    """Lake keys (without the lake prefix) of the manifests one S3 event message announces;
    other events, other objects and S3's ``s3:TestEvent`` name none. Raises ``BadMessage``
    with the reason for anything that is not an S3 event."""
    try:
        event = json.loads(body) if isinstance(body, str) else body
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadMessage(f"not JSON: {e}") from None
    if not isinstance(event, dict):
        raise BadMessage(f"not an S3 event: a JSON {type(event).__name__}")
    if "Records" not in event:
        if event.get("Event") == "s3:TestEvent":
            return []
        raise BadMessage("not an S3 event: no 'Records'")
    records = event["Records"]
    if not isinstance(records, list):
        raise BadMessage("not an S3 event: 'Records' is not a list")
    found: set[str] = set()
    for i, record in enumerate(records):
        try:
            name = str(record.get("eventName", ""))
            key = unquote_plus(record["s3"]["object"]["key"])
        except (AttributeError, KeyError, TypeError):
            raise BadMessage(f"record {i} names no s3.object.key") from None
        if not name.startswith(("ObjectCreated", "s3:ObjectCreated")):
            continue
        if not key.startswith(lake_prefix):
            continue
        key = key[len(lake_prefix) :]
        parsed = L.parse_raw_key(key)
        if parsed is not None and parsed.is_manifest:
            found.add(key)
    return sorted(found)


def manifest_keys_from_events(
    bodies: Iterable[str | dict[str, Any]], lake_prefix: str
) -> list[str]:
    """The manifests a batch of S3 event messages announces (``manifest_keys_of`` each)."""
    return sorted({k for body in bodies for k in manifest_keys_of(body, lake_prefix)})


def head_all(store: ObjectStore, keys: Iterable[str]) -> list[ObjectInfo]:
    """The objects as listing would return them, by parallel HEADs (deleted ones dropped)."""
    keys = sorted(set(keys))
    with ThreadPoolExecutor(max_workers=min(32, len(keys) or 1)) as pool:
        infos = list(pool.map(store.head, keys))
    return sorted((i for i in infos if i is not None), key=lambda o: (o.last_modified, o.key))


def manifests_from_events(
    store: ObjectStore, bodies: Iterable[str | dict[str, Any]], lake_prefix: str
) -> list[ObjectInfo]:
    """The manifests the events name, as listing would return them (deleted ones dropped)."""
    return head_all(store, manifest_keys_from_events(bodies, lake_prefix))


# -- queues -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    body: str
    handle: str
    """What acknowledges it (an SQS receipt handle)."""


class UploadQueue(Protocol):
    def receive(self, max_messages: int) -> list[Message]: ...
    def acknowledge(self, handles: list[str]) -> int:
        """Delete the messages; returns how many the queue no longer knew (expired handles:
        those messages come again, and are deduped)."""
        ...

    def dead_letter(self, message: Message, reason: str) -> bool:
        """Move a bad message to the dead-letter queue with its reason; ``False`` where the
        queue has none (the message stays, for the queue's own redrive)."""
        ...


class SqsUploadQueue:
    """An SQS queue of bucket notifications: receive a batch, acknowledge it later. Its
    dead-letter queue is ``dead_letter_url``, else the queue's redrive policy target."""

    def __init__(
        self,
        queue_url: str,
        client: Any = None,
        *,
        dead_letter_url: str | None = None,
        visibility_s: int = VISIBILITY_S,
    ) -> None:
        import boto3

        self.queue_url = queue_url
        self.visibility_s = visibility_s
        self.client = client or boto3.client(
            "sqs",
            endpoint_url=os.environ.get("DATALOOP_SQS_ENDPOINT") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
        )
        self._dead_letter_url = dead_letter_url

    def _receive_one(self, _: int) -> list[Message]:
        resp = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=self.visibility_s,
        )
        return [Message(m["Body"], m["ReceiptHandle"]) for m in resp.get("Messages", [])]

    def receive(self, max_messages: int = MAX_MESSAGES) -> list[Message]:
        """Up to about ``max_messages`` messages, eight receive calls at a time, no waiting."""
        out: list[Message] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(out) < max_messages:
                rounds = min(8, -(-(max_messages - len(out)) // 10))
                got = [m for batch in pool.map(self._receive_one, range(rounds)) for m in batch]
                out += got
                if not got:
                    break
        return out

    def _delete(self, batch: list[str]) -> int:
        resp = self.client.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
        )
        return len(resp.get("Failed", []))

    def acknowledge(self, handles: list[str]) -> int:
        batches = [handles[i : i + 10] for i in range(0, len(handles), 10)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(self._delete, batches))

    def dead_letter_url(self) -> str | None:
        if self._dead_letter_url is None:
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
            target = json.loads(attrs.get("RedrivePolicy", "{}")).get("deadLetterTargetArn")
            self._dead_letter_url = (
                self.client.get_queue_url(QueueName=target.rsplit(":", 1)[-1])["QueueUrl"]
                if target
                else ""
            )
        return self._dead_letter_url or None

    def dead_letter(self, message: Message, reason: str) -> bool:
        url = self.dead_letter_url()
        if url is None:
            return False
        self.client.send_message(
            QueueUrl=url,
            MessageBody=message.body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
        self.acknowledge([message.handle])
        return True


def open_queue(spec: str) -> UploadQueue:
    """The queue ``DATALOOP_UPLOAD_QUEUE`` names: ``sqs:<queue URL>`` (its dead-letter queue
    from ``DATALOOP_UPLOAD_DLQ`` or the queue's redrive policy)."""
    kind, _, rest = spec.partition(":")
    if kind == "sqs" and rest:
        return SqsUploadQueue(
            rest,
            dead_letter_url=os.environ.get("DATALOOP_UPLOAD_DLQ") or None,
            visibility_s=int(os.environ.get("DATALOOP_QUEUE_VISIBILITY_S", VISIBILITY_S)),
        )
    raise ValueError(
        f"DATALOOP_UPLOAD_QUEUE={spec!r}: expected 'sqs:<queue URL>', "
        "for example sqs:https://sqs.eu-central-1.amazonaws.com/123456789012/uploads"
    )


# -- one sensor tick --------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueCursor:
    """The sensor's cursor on the queue path: the object holding the last tick's receipt
    handles and requested manifests, and the day of the last reconciling listing."""

    pending: str | None = None
    reconciled: str | None = None

    def to_json(self) -> str:
        return json.dumps({"queue": {"pending": self.pending, "reconciled": self.reconciled}})

    @classmethod
    def from_json(cls, text: str | None) -> QueueCursor:
        """A listing cursor (the sensor switched to the queue) starts afresh, and reconciles."""
        raw = (json.loads(text) if text else {}).get("queue") or {}
        return cls(raw.get("pending"), raw.get("reconciled"))


@dataclass
class QueueTick:
    manifests: list[ObjectInfo]
    cursor: QueueCursor
    received: int = 0
    acknowledged: int = 0
    ack_expired: int = 0
    redelivered: int = 0
    dead: list[tuple[str, str]] = field(default_factory=list)
    """(message body, reason) of each message dead-lettered, or left where no DLQ is set."""
    reconciled: int | None = None
    """Manifests the reconciling listing found, when it ran this tick."""


def drain_queue(
    store: ObjectStore,
    queue: UploadQueue,
    cursor: QueueCursor,
    *,
    now: datetime | None = None,
    late_days: int = 1,
    max_messages: int = MAX_MESSAGES,
) -> QueueTick:
    """One tick of the notification path: acknowledge the last tick's messages, receive new
    ones, and return the manifests to request with the cursor to store."""
    now = now or datetime.now(UTC)
    last = read_json(store, cursor.pending) if cursor.pending else None
    last = last or {"handles": [], "requested": []}
    expired = queue.acknowledge(last["handles"]) if last["handles"] else 0
    if cursor.pending:
        store.delete(cursor.pending)

    messages = queue.receive(max_messages)
    lake_prefix = getattr(store, "prefix", "")  # an S3 lake's key prefix inside its bucket
    keys: set[str] = set()
    handles: list[str] = []
    dead: list[tuple[str, str]] = []
    for message in messages:
        try:
            keys.update(manifest_keys_of(message.body, lake_prefix))
        except BadMessage as e:
            dead.append((message.body, str(e)))
            # Acknowledged once dead-lettered; where no DLQ is set, left to the queue's redrive.
            queue.dead_letter(message, str(e))
            continue
        handles.append(message.handle)
    requested_before = set(last["requested"])
    fresh = keys - requested_before
    manifests = head_all(store, fresh)

    reconciled: int | None = None
    today = now.date().isoformat()
    if cursor.reconciled != today:
        found = [
            o
            for o in unrecorded_manifests(store, now=now, late_days=late_days)
            if o.key not in fresh and o.key not in requested_before
        ]
        reconciled = len(found)
        manifests = sorted(manifests + found, key=lambda o: (o.last_modified, o.key))

    pending = None
    if handles or manifests:
        pending = f"{L.UPLOAD_QUEUE_PENDING}{uuid.uuid4().hex}.json"
        write_json(
            store, pending, {"handles": handles, "requested": sorted(o.key for o in manifests)}
        )
    return QueueTick(
        manifests=manifests,
        cursor=QueueCursor(pending, today if reconciled is not None else cursor.reconciled),
        received=len(messages),
        acknowledged=len(last["handles"]) - expired,
        ack_expired=expired,
        redelivered=len(keys & requested_before),
        dead=dead,
        reconciled=reconciled,
    )
