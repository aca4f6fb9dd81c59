"""Deletion requests: remove a vehicle's or a drive's data from the lake and everything
derived from it, supersede the dataset versions that held it, and keep an audit record.

What counts as the subject's data: every object under a ``vehicle=V`` key segment (for a
drive, also under ``drive=D`` or named ``D.*``): its ledger record among them. Indexes that
merely list the subject (the ledger's hour indexes, the stages' hour summaries, telemetry, the
day indexes of curation and search) are rewritten without it.
Immutable records (dataset versions and manifests, lineage nodes, audit records) keep naming
the subject's ids so that history stays verifiable; the manifest of every dataset version
that held it is marked superseded and a successor is built without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataloop.curation import datasets as D
from dataloop.ingest.tables import to_parquet
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.pointers import put_json, read_json, update_json
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.lineage.graph import forward
from dataloop.search.index import purge as purge_search

JSON_INDEXES = L.HOUR_INDEXES
"""Hour indexes that list drives by id."""
PARQUET_INDEXES = L.DAY_INDEXES
"""Day indexes: a pointer ``…/date=D.json`` to Parquet objects with vehicle_id/drive_id."""
KEEP = L.zone("history").prefixes
"""Immutable history: never deleted, never rewritten."""


@dataclass(frozen=True)
class Subject:
    vehicle: str
    drive: str | None = None

    def owns(self, key: str) -> bool:
        """Whether the object at ``key`` is the subject's data."""
        return not key.startswith(KEEP) and L.belongs_to(key, self.vehicle, self.drive)

    def rows_in(self, table: pa.Table) -> pa.ChunkedArray:
        """A mask of the table's rows that are the subject's (``vehicle_id``/``drive_id``)."""
        mine = pc.equal(table["vehicle_id"], self.vehicle)
        if self.drive:
            mine = pc.and_(mine, pc.equal(table["drive_id"], self.drive))
        return mine

    def named_in(self, value: Any) -> bool:
        """Whether an index entry (a dict, a ``[vehicle, drive, ...]`` row) is the subject's."""
        if isinstance(value, dict):
            v = value.get("vehicle", value.get("vehicle_id"))
            d = value.get("drive", value.get("drive_id"))
            return v == self.vehicle and (self.drive is None or d == self.drive)
        if isinstance(value, list) and len(value) >= 2 and value[0] == self.vehicle:
            return self.drive is None or value[1] == self.drive
        return False


def scrub(value: Any, subject: Subject, vehicle_scoped: bool = False) -> Any:
    """``value`` without the entries that name the subject. In an object that belongs to the
    subject's vehicle (telemetry), a bare drive id names the drive."""
    if isinstance(value, dict):
        return {k: scrub(v, subject, vehicle_scoped) for k, v in value.items()}
    if isinstance(value, list):
        return [
            scrub(v, subject, vehicle_scoped)
            for v in value
            if not subject.named_in(v) and not (vehicle_scoped and v == subject.drive)
        ]
    return value


def resolve_subject(store: ObjectStore, vehicle: str | None, drive: str | None) -> Subject:
    if drive is not None:
        L.validate_id(drive, "drive")
        if vehicle is None:
            owners = ledger.owners(store, drive)
            if len(owners) != 1:
                raise LookupError(f"drive {drive!r}: {len(owners)} vehicles have it; name one")
            vehicle = owners.pop()
    if vehicle is None:
        raise ValueError("name a vehicle, a drive, or both")
    return Subject(L.validate_id(vehicle, "vehicle"), drive)


def _rewrite_json_indexes(store: ObjectStore, subject: Subject) -> list[str]:
    rewritten = []
    telemetry = L.TELEMETRY_REPORTS
    prefixes = [*JSON_INDEXES, telemetry] if subject.drive else list(JSON_INDEXES)
    for prefix in prefixes:
        for info in list(store.list(prefix)):
            scoped = L.in_vehicle_prefix(info.key, subject.vehicle)
            if not info.key.endswith(".json") or (prefix == telemetry and not scoped):
                continue
            before = read_json(store, info.key)
            if scrub(before, subject, scoped) != before:
                update_json(store, info.key, lambda v, s=scoped: scrub(v, subject, s))
                rewritten.append(info.key)
    return rewritten


def _rewrite_parquet_indexes(store: ObjectStore, subject: Subject) -> tuple[list[str], list[str]]:
    """Day indexes: write each affected Parquet anew without the subject's rows, point the
    day at it, then delete the old object (it held the subject's rows)."""
    rewritten, deleted = [], []
    for prefix in PARQUET_INDEXES:
        for info in list(store.list(prefix)):
            if not info.key.endswith(".json"):
                continue
            pointer = read_json(store, info.key)
            renames = {}
            for old in _parquet_keys(pointer):
                table = pq.read_table(io.BytesIO(store.get(old)))
                mine = subject.rows_in(table)
                if not pc.any(mine).as_py():
                    continue
                data, sha = to_parquet(table.filter(pc.invert(mine)))
                new = L.rehashed_key(old, sha)
                with contextlib.suppress(ObjectExists):
                    store.put(new, data)
                renames[old] = new
            if renames or scrub(pointer, subject) != pointer:
                update_json(store, info.key, lambda v, r=renames: _rename(scrub(v, subject), r))
                rewritten.append(info.key)
            for old in renames:
                store.delete(old)
                deleted.append(old)
    return rewritten, deleted


def _parquet_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for v in value.values() for k in _parquet_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _parquet_keys(v)]
    return [value] if isinstance(value, str) and value.endswith(".parquet") else []


def _rename(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, renames) for v in value]
    return renames.get(value, value) if isinstance(value, str) else value


def _supersede(store: ObjectStore, subject: Subject, reason: str) -> list[dict[str, Any]]:
    """Mark every dataset version holding the subject superseded; the latest version of each
    dataset gets a successor without the subject's clips."""
    out = []
    for name in D.dataset_names(store):
        affected = [
            r
            for r in D.versions(store, name)
            if pc.any(subject.rows_in(D.read_manifest(store, r))).as_py()
        ]
        if not affected:
            continue
        latest = read_json(store, L.dataset_latest_key(name))
        current = D.find_version(store, f"{name}:{latest['seq']}")
        successor = current
        if any(r["version"] == current["version"] for r in affected):
            manifest = D.read_manifest(store, current)
            successor = D.publish(
                store,
                name,
                manifest.filter(pc.invert(subject.rows_in(manifest))),
                {"reason": reason, "successor_of": current["version"]},
            )
        for r in affected:
            with contextlib.suppress(ObjectExists):
                put_json(
                    store,
                    L.dataset_superseded_key(name, r["version"]),
                    {
                        "version": r["version"],
                        "seq": r["seq"],
                        "superseded_by": successor["version"],
                        "reason": reason,
                        "at": _now(),
                    },
                )
        out.append(
            {
                "dataset": name,
                "superseded": [f"{name}:{r['seq']} {r['version']}" for r in affected],
                "successor": f"{name}:{successor['seq']} {successor['version']}",
            }
        )
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat()


def forget(
    store: ObjectStore,
    *,
    vehicle: str | None = None,
    drive: str | None = None,
    requested_by: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Carry out a deletion request; returns (and stores) its audit record."""
    subject = resolve_subject(store, vehicle, drive)
    step = on_progress or (lambda _: None)
    what = f"vehicle {subject.vehicle}" + (f" drive {subject.drive}" if subject.drive else "")
    reason = f"deletion request: {what}"
    step("lineage")
    used_by = forward(store, subject.vehicle, subject.drive)
    step("indexes")
    json_rewritten = _rewrite_json_indexes(store, subject)
    parquet_rewritten, index_objects_deleted = _rewrite_parquet_indexes(store, subject)
    index_objects_deleted += purge_search(store, subject.vehicle, subject.drive)
    step("datasets")
    datasets = _supersede(store, subject, reason)
    step("data")
    doomed = [i.key for i in store.list("") if subject.owns(i.key)]
    for key in doomed:
        store.delete(key)
    audit = {
        "request": {"vehicle": subject.vehicle, "drive": subject.drive},
        "requested_by": requested_by or os.environ.get("USER", "unknown"),
        "at": _now(),
        "deleted_objects": len(doomed) + len(index_objects_deleted),
        "deleted_keys_sha256": hashlib.sha256(
            "\n".join(sorted(doomed + index_objects_deleted)).encode()
        ).hexdigest(),
        "rewritten_indexes": sorted(json_rewritten + parquet_rewritten),
        "datasets": datasets,
        "affected_models": used_by["models"],
        "affected_releases": used_by["releases"],
    }
    digest = hashlib.sha256(reason.encode()).hexdigest()[:12]
    key = L.forget_audit_key(audit["at"], digest)
    put_json(store, key, audit)
    audit["audit_key"] = key
    return audit
