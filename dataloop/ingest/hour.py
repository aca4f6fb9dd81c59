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


def ingest_hour(
    store: ObjectStore,
    hour: str,
    on_drive: Callable[[dict[str, Any]], None] | None = None,
) -> HourReport:
    """Ingest the hour's uploads (skipping those already done), in ``DATALOOP_WORKERS``
    processes, and write its index. An upload whose worker died is quarantined
    (``worker_died``); an upload whose ingest raised fails the hour (``DrivesFailed``) once
    every other upload is recorded."""
    report = HourReport(hour)
    manifests = list(manifests_in_hour(store, hour))

    def done(outcome: dict[str, Any] | Failure) -> None:
        if on_drive and not isinstance(outcome, Failure):
            on_drive(outcome)

    outcomes = map_drives(partial(ingest_upload, hour=hour), store, manifests, on_done=done)
    for k, outcome in enumerate(outcomes):
        if isinstance(outcome, Failure) and outcome.died:
            outcomes[k] = worker_died(store, outcome.item, hour=hour)
            done(outcomes[k])
    report.drives, failures = split(outcomes)
    drives = [(d["vehicle"], d["drive"]) for d in report.drives if d.get("vehicle")]
    ledger.index_hour(store, hour, ledger.INGEST, drives)
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
