"""Retention per zone of the lake (assets/quality/retention.yaml), applied by a scheduled
asset: objects older than their zone's limit are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from dataloop.lake.store import ObjectStore

NEVER_SWEPT = ("ingest/", "quality/", "compliance/")


def load_retention(path: Path) -> dict[str, dict]:
    zones = yaml.safe_load(path.read_text())["zones"]
    for name, zone in zones.items():
        for prefix in zone["prefixes"]:
            if prefix.startswith(NEVER_SWEPT) or not prefix.endswith("/"):
                raise ValueError(f"retention zone {name}: prefix {prefix!r} may not be swept")
    return zones


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
