"""One tick of ``raw_upload_sensor`` on the notification path (``DATALOOP_UPLOAD_QUEUE``).

- A message counts as consumed only once Dagster has stored the run requests and the cursor
  of the tick that read it: SQS receipt handles wait in a small lake object the cursor names
  and the *next* tick deletes them (the queue keeps them invisible meanwhile); a stream's
  offset is in the cursor itself.
- The manifests the last tick requested are dropped when redelivered, and the run keys
  (``HourRun.run_key``) dedupe whole batches planned twice.
- A message that is no S3 event is dead-lettered with its reason.
- Once a day the recent upload days are listed, and manifests that no hour's ingest record
  names are requested (``discovery.unrecorded_manifests``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dataloop.ingest.discovery import unrecorded_manifests
from dataloop.ingest.notifications import Announced, BadMessage, announced_in, resolve
from dataloop.ingest.upload_queues import MAX_MESSAGES, UploadQueue
from dataloop.lake import layout as L
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectInfo, ObjectStore


@dataclass(frozen=True)
class QueueCursor:
    """The sensor's cursor on the queue path: the object holding the last tick's receipt
    handles and requested manifests, a stream's next offset, and the day of the last
    reconciling listing."""

    pending: str | None = None
    reconciled: str | None = None
    offset: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "queue": {
                    "pending": self.pending,
                    "reconciled": self.reconciled,
                    "offset": self.offset,
                }
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> QueueCursor:
        """A listing cursor (the sensor switched to the queue) starts afresh, and reconciles."""
        raw = (json.loads(text) if text else {}).get("queue") or {}
        return cls(raw.get("pending"), raw.get("reconciled"), raw.get("offset"))


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
    """Acknowledge the last tick's messages, read new ones, and return the manifests to
    request with the cursor to store."""
    now = now or datetime.now(UTC)
    last = read_json(store, cursor.pending) if cursor.pending else None
    last = last or {"handles": [], "requested": []}
    expired = queue.acknowledge(last["handles"]) if last["handles"] else 0
    if cursor.pending:
        store.delete(cursor.pending)

    received = queue.receive(max_messages, cursor.offset)
    lake_prefix = getattr(store, "prefix", "")  # an S3 lake's key prefix inside its bucket
    announced: dict[str, Announced] = {}
    handles: list[str] = []
    dead: list[tuple[str, str]] = []
    for message in received.messages:
        try:
            announced.update((a.key, a) for a in announced_in(message.body, lake_prefix))
        except BadMessage as e:
            dead.append((message.body, str(e)))
            # Acknowledged once dead-lettered; where no DLQ is set, left to the queue's redrive.
            queue.dead_letter(message, str(e))
            continue
        if message.handle:
            handles.append(message.handle)
    requested_before = set(last["requested"])
    keys = set(announced)
    fresh = keys - requested_before
    manifests = resolve(store, (announced[k] for k in fresh))

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
        cursor=QueueCursor(
            pending,
            today if reconciled is not None else cursor.reconciled,
            received.offset,
        ),
        received=len(received.messages),
        acknowledged=len(last["handles"]) - expired,
        ack_expired=expired,
        redelivered=len(keys & requested_before),
        dead=dead,
        reconciled=reconciled,
    )
