"""Ingest every upload that arrived in one hour (the partition of the ingest asset)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from functools import partial
from typing import Any

from dataloop.infra.workers import DrivesFailed, Failure, map_drives, split
from dataloop.ingest.drive import QUARANTINED, USABLE, ingest_upload, worker_died
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_json
from dataloop.lake.pointers import write_json
from dataloop.lake.store import ObjectInfo, ObjectStore

KEY_DAY_SLACK = timedelta(days=1)
"""A manifest's key carries the day its upload *started*; it may commit the next day."""


def manifests_in_hour(store: ObjectStore, hour: str) -> Iterator[ObjectInfo]:
    """Committed manifests whose arrival time (server LastModified) falls in ``hour``."""
    start = L.parse_hour(hour)
    end = start + timedelta(hours=1)
    days = sorted({(start - KEY_DAY_SLACK).date(), start.date(), (end - timedelta(0, 1)).date()})
    for day in days:
        for info in store.list(L.raw_day_prefix(day)):
            if L.is_manifest_key(info.key) and start <= info.last_modified < end:
                yield info


def upload_days(store: ObjectStore) -> list[str]:
    """Every upload day (``YYYY-MM-DD``) under raw/: for backfills and tests, not the sensor."""
    return sorted({L.raw_key_day(o.key) for o in store.list(L.RAW_UPLOADS)})


def arrival_hours(store: ObjectStore, days: list[str]) -> list[str]:
    """The arrival hours of every manifest under the given upload days (``YYYY-MM-DD``)."""
    return sorted(
        {
            L.utc_hour_key(o.last_modified.astimezone(UTC))
            for day in days
            for o in store.list(L.raw_day_prefix(day))
            if L.is_manifest_key(o.key)
        }
    )


@dataclass
class HourReport:
    hour: str
    drives: list[dict[str, Any]] = field(default_factory=list)

    @property
    def data_version(self) -> str:
        """Hash of the versions of the hour's drives: changes iff what the hour holds changes."""
        return sha256_json(
            sorted((d["manifest_key"], d["status"], d["version"]) for d in self.drives)
        )[:32]

    def count(self, *statuses: str) -> int:
        return sum(d["status"] in statuses for d in self.drives)

    @property
    def usable(self) -> list[dict[str, Any]]:
        return [d for d in self.drives if d["status"] in USABLE]

    def summary(self) -> dict[str, Any]:
        usable = self.usable
        return {
            "hour": self.hour,
            "data_version": self.data_version,
            "drives": len(self.drives),
            "usable": len(usable),
            "recovered": self.count("recovered"),
            "quarantined": self.count(QUARANTINED),
            "newly_processed": sum(not d.get("skipped") for d in self.drives),
            "hours_of_driving": round(sum(d.get("duration_s", 0) for d in usable) / 3600, 4),
            "bytes": sum(d.get("bytes", 0) for d in usable),
        }


def shard_uploads(manifests: list[ObjectInfo], n: int) -> list[list[ObjectInfo]]:
    """The hour's uploads in at most ``n`` shards, by vehicle: a vehicle's uploads stay in one
    shard (one worker writes its drives' records), and vehicles go to the shard with the
    fewest uploads so far, the busiest first. Always at least one shard, empty or not."""
    by_vehicle: dict[str, list[ObjectInfo]] = {}
    for m in manifests:
        parsed = L.parse_raw_key(m.key)
        by_vehicle.setdefault(parsed.vehicle if parsed else m.key, []).append(m)
    shards: list[list[ObjectInfo]] = [[] for _ in range(max(1, min(n, len(by_vehicle))))]
    for vehicle in sorted(by_vehicle, key=lambda v: (-len(by_vehicle[v]), v)):
        min(shards, key=len).extend(by_vehicle[vehicle])
    return shards


def ingest_uploads(
    store: ObjectStore,
    hour: str,
    manifests: list[ObjectInfo],
    on_drive: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[Failure]]:
    """Ingest some of the hour's uploads (skipping those already done), in
    ``DATALOOP_WORKERS`` processes: their records, and the uploads whose ingest raised. An
    upload whose worker died is quarantined (``worker_died``)."""

    def done(outcome: dict[str, Any] | Failure) -> None:
        if on_drive and not isinstance(outcome, Failure):
            on_drive(outcome)

    outcomes = map_drives(partial(ingest_upload, hour=hour), store, manifests, on_done=done)
    for k, outcome in enumerate(outcomes):
        if isinstance(outcome, Failure) and outcome.died:
            outcomes[k] = worker_died(store, outcome.item, hour=hour)
            done(outcomes[k])
    return split(outcomes)


def ingest_hour(
    store: ObjectStore,
    hour: str,
    on_drive: Callable[[dict[str, Any]], None] | None = None,
) -> HourReport:
    """Ingest the hour's uploads in one go (``ingest_uploads`` over all, then
    ``record_hour``): the plain-Python path of what the ingest asset fans out by vehicle."""
    drives, failures = ingest_uploads(store, hour, list(manifests_in_hour(store, hour)), on_drive)
    return record_hour(store, hour, drives, failures)


def record_hour(
    store: ObjectStore, hour: str, drives: list[dict[str, Any]], failures: list[Failure]
) -> HourReport:
    """Index the hour's ingested uploads (every shard's) and write its summary; uploads whose
    ingest raised fail the hour (``DrivesFailed``) once every other upload is recorded."""
    report = HourReport(hour, sorted(drives, key=lambda d: d["manifest_key"]))
    ledger.index_hour(
        store,
        hour,
        ledger.INGEST,
        [(d["vehicle"], d["drive"]) for d in report.drives if d.get("vehicle")],
    )
    write_json(
        store,
        L.hour_record_key(hour),
        {
            **report.summary(),
            "drives": [
                {
                    **{
                        k: d.get(k)
                        for k in ("vehicle", "drive", "manifest_key", "status", "version")
                    },
                    "reasons": [r["code"] for r in d.get("reasons", [])],
                }
                for d in report.drives
            ],
        },
    )
    if failures:
        raise DrivesFailed("ingest", [(f.item.key, f) for f in failures])
    return report
