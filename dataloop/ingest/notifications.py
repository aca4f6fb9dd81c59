"""Bucket notifications: the S3 event messages that announce committed manifests (the
fleet-scale path of finding uploads; docs/scaling.md).

S3 sends ``s3:ObjectCreated:*`` events to SQS; radosgw and MinIO to AMQP (and NATS, Kafka or a
webhook). All of them carry the S3 event JSON (``{"Records": [...]}``). ``dataloop infra
bootstrap --notify-queue ARN`` subscribes a queue to committed manifests only (prefix
``raw/``, suffix ``.manifest.json``). Each event becomes the same ``ObjectInfo`` that listing
returns, with the object's own LastModified (one HEAD), so ``plan_hour_runs`` assigns the same
arrival hour and run key whichever path found the manifest. The queues are in
``upload_queues.py``, the sensor's tick over them in ``queue_tick.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

from dataloop.lake import layout as L
from dataloop.lake.store import ObjectInfo, ObjectStore


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
