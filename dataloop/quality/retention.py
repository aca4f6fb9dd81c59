"""Retention per zone of the lake (assets/quality/retention.yaml), applied by a scheduled
asset: objects older than their zone's limit are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataloop import rules
from dataloop.lake.store import ObjectStore
from dataloop.rules import schemas as S

NEVER_SWEPT = ("ingest/", "quality/", "compliance/")


def load_retention(path: Path, data: bytes | None = None) -> dict[str, dict]:
    """The zones of ``path`` (or of ``data``, its bytes); a prefix of the lake's index
    (``NEVER_SWEPT``) is an error (``RulesError``: file, line)."""
    doc = rules.load(path, S.Retention, data, context={"never_swept": NEVER_SWEPT})
    return doc["zones"]


def sweep(store: ObjectStore, zones: dict[str, dict], now: datetime | None = None) -> dict:
    """Delete what each zone no longer keeps; returns {zone: {"deleted": n, "bytes": b}}."""
    now = now or datetime.now(UTC)
    report = {}
    for name, zone in zones.items():
        cutoff = now - timedelta(days=zone["days"])
        deleted = size = 0
        for prefix in zone["prefixes"]:
            for info in list(store.list(prefix)):
                if info.last_modified < cutoff:
                    store.delete(info.key)
                    deleted += 1
                    size += info.size
        report[name] = {"deleted": deleted, "bytes": size, "days": zone["days"]}
    return report
