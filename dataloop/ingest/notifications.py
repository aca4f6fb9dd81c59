"""Bucket notifications: the S3 event messages that announce committed manifests (the
fleet-scale path of finding uploads; docs/scaling.md).

S3 sends ``s3:ObjectCreated:*`` events to SQS; radosgw and MinIO to AMQP (and NATS, Kafka or a
webhook). All of them carry the S3 event JSON (``{"Records": [...]}``). ``dataloop infra
bootstrap --notify-queue ARN`` subscribes a queue to committed manifests only (prefix
``raw/``, suffix ``.manifest.json``). Each event becomes the ``ObjectInfo`` that listing
returns, so ``plan_hour_runs`` assigns the same arrival hour (the hour of the server's
LastModified, which ``ingest_hour`` lists by) and run key whichever path found the manifest:

- an event whose ``eventTime`` lies more than ``HOUR_EDGE`` from an hour's edge is in that
  hour (the server stamps both when it stores the object; they differ by milliseconds);
- the rest, and events without a time, are HEADed for their LastModified (a deleted manifest
  is dropped).

The queues are in ``upload_queues.py``, the sensor's tick over them in ``queue_tick.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from dataloop.lake import layout as L
from dataloop.lake.store import ObjectInfo, ObjectStore

HOUR_EDGE = timedelta(minutes=1)
"""An event this close to an hour's edge is HEADed: its LastModified may be in the other hour."""


@dataclass(frozen=True)
class Announced:
    """One committed manifest an event names: its lake key, and what the event says of it."""

    key: str
    event_time: datetime | None = None
    size: int = 0
    etag: str = ""

    def hour_is_certain(self) -> bool:
        if self.event_time is None:
            return False
        into_hour = self.event_time - self.event_time.replace(minute=0, second=0, microsecond=0)
        return HOUR_EDGE < into_hour < timedelta(hours=1) - HOUR_EDGE


class BadMessage(ValueError):
    """A queue message that is not an S3 event notification."""


def _event_time(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record["eventTime"])).astimezone(UTC)
    except (KeyError, ValueError):
        return None


def announced_in(body: str | dict[str, Any], lake_prefix: str) -> list[Announced]:
    """The manifests one S3 event message announces, by lake key (without the lake prefix);
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
    found: dict[str, Announced] = {}
    for i, record in enumerate(records):
        try:
            name = str(record.get("eventName", ""))
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])
        except (AttributeError, KeyError, TypeError):
            raise BadMessage(f"record {i} names no s3.object.key") from None
        if not name.startswith(("ObjectCreated", "s3:ObjectCreated")):
            continue
        if not key.startswith(lake_prefix):
            continue
        key = key[len(lake_prefix) :]
        parsed = L.parse_raw_key(key)
        if parsed is not None and parsed.is_manifest:
            size = obj.get("size")
            found[key] = Announced(
                key,
                _event_time(record),
                size if isinstance(size, int) else 0,
                str(obj.get("eTag") or ""),
            )
    return [found[k] for k in sorted(found)]


def head_all(store: ObjectStore, keys: Iterable[str]) -> list[ObjectInfo]:
    """The objects as listing would return them, by parallel HEADs (deleted ones dropped)."""
    keys = sorted(set(keys))
    with ThreadPoolExecutor(max_workers=min(32, len(keys) or 1)) as pool:
        infos = list(pool.map(store.head, keys))
    return sorted((i for i in infos if i is not None), key=lambda o: (o.last_modified, o.key))


def resolve(store: ObjectStore, announced: Iterable[Announced]) -> list[ObjectInfo]:
    """The announced manifests as listing would return them, for planning hour runs: from the
    event where its time is clear of an hour's edge, else by a HEAD."""
    certain: list[ObjectInfo] = []
    uncertain: list[str] = []
    for a in announced:
        if a.event_time is not None and a.hour_is_certain():
            certain.append(ObjectInfo(a.key, a.size, a.event_time, a.etag))
        else:
            uncertain.append(a.key)
    return sorted(certain + head_all(store, uncertain), key=lambda o: (o.last_modified, o.key))


def manifests_from_events(
    store: ObjectStore, bodies: Iterable[str | dict[str, Any]], lake_prefix: str
) -> list[ObjectInfo]:
    """The manifests a batch of S3 event messages announces, HEADed: exactly as listing
    returns them (deleted ones dropped)."""
    keys = {a.key for body in bodies for a in announced_in(body, lake_prefix)}
    return head_all(store, keys)
