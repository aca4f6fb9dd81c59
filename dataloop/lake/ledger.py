"""The per-drive ledger: one record per drive with one section per stage, and one index per
arrival hour that lists the hour's drives with their sections.

Each stage owns its section and writes only that one (``ingest``, then ``verdict``,
``compliance``, ``labels``), by compare-and-swap on the drive's record and on its hour's index,
so stages that run at once never lose each other's sections. A section is the stage's record
of the drive; large detail (tables, frame packs, frame indexes, label tables) stays in objects
of their own that the section names by key.

Every stage from labelling on reads drives only here: one drive (``drive``: one request), an
hour (``hour_drives``: one request) or a day (``drives_of_day``: one request per hour, however
many drives arrived).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dataloop.lake import layout as L
from dataloop.lake.hashing import sha256_json
from dataloop.lake.pointers import read_json, update_json
from dataloop.lake.store import ObjectStore

INGEST, VERDICT, COMPLIANCE, LABELS = "ingest", "verdict", "compliance", "labels"
SECTIONS = (INGEST, VERDICT, COMPLIANCE, LABELS)
"""The sections of a drive's record, in the order the stages write them."""
INGESTED, RECOVERED, QUARANTINED = "ingested", "recovered", "quarantined"
USABLE = (INGESTED, RECOVERED)
"""Ingest statuses of a drive whose tables were written."""
PASS, WARN, QUARANTINE = "pass", "warn", "quarantine"
"""The quality verdicts of a drive (also the severities of a failed check): ``QUARANTINE``, the
drive may go no further."""


@dataclass(frozen=True)
class DriveState:
    """What the lake knows of one drive: its sections (``None`` where a stage has not
    written one)."""

    vehicle: str
    drive: str
    ingest: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    compliance: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> DriveState:
        return cls(record["vehicle"], record["drive"], *(record.get(s) for s in SECTIONS))

    @property
    def hour(self) -> str | None:
        """The arrival hour of the upload that counts."""
        return (self.ingest or {}).get("hour")

    @property
    def usable(self) -> bool:
        """Decoded into tables (fully or the readable part)."""
        return (self.ingest or {}).get("status") in USABLE

    @property
    def approved(self) -> bool:
        """Passed the quality checks (or only warned) for the upload that counts."""
        return (
            self.usable
            and self.verdict is not None
            and self.verdict["verdict"] != QUARANTINE
            and self.verdict.get("manifest_key") == self.ingest["manifest_key"]
        )

    @property
    def compliant(self) -> bool:
        """Approved, anonymised and geofenced, and not excluded."""
        return (
            self.approved
            and self.compliance is not None
            and not self.compliance["excluded"]
            and self.compliance.get("manifest_key") == self.ingest["manifest_key"]
        )

    @property
    def version(self) -> str | None:
        """The exact state of the drive that curation uses: its compliance section (upload,
        anonymiser and geofence versions, derived frames) and its label table (labeller
        version, human review), hashed. ``None`` unless the drive is compliant."""
        if not self.compliant:
            return None
        return sha256_json([self.compliance, self.labels_key])[:16]

    @property
    def table_infos(self) -> dict[str, dict[str, Any]]:
        """The decoded tables: name -> {key, rows, schema, ...}."""
        return (self.ingest or {}).get("tables", {})

    @property
    def tables(self) -> dict[str, str]:
        """The decoded tables: name -> key."""
        return {n: t["key"] for n, t in self.table_infos.items()}

    @property
    def labels_key(self) -> str | None:
        """The current offboard label table, if the drive was labelled."""
        return (self.labels or {}).get("labels")

    @property
    def log_metadata(self) -> dict[str, Any]:
        return (self.ingest or {}).get("log_metadata", {})

    def section(self, name: str) -> dict[str, Any] | None:
        return getattr(self, name)


# -- writing ----------------------------------------------------------------------------------
def _entry(vehicle: str, drive: str) -> dict[str, Any]:
    return {"vehicle": vehicle, "drive": drive}


def _set(record: dict | None, vehicle: str, drive: str, name: str, section: dict) -> dict:
    return {**(record or _entry(vehicle, drive)), name: section}


def _index_drives(
    store: ObjectStore, hour: str, records: list[tuple[str, str, str, dict, dict]]
) -> None:
    """Set sections of drives in an hour's index: ``(vehicle, drive, name, section, fill)``
    where ``fill`` holds sections to add only where the entry has none (a drive moving in)."""

    def update(index: dict | None) -> dict:
        drives = {(d["vehicle"], d["drive"]): d for d in (index or {}).get("drives", [])}
        for vehicle, drive, name, section, fill in records:
            entry = drives.get((vehicle, drive)) or _entry(vehicle, drive)
            entry = {**{k: v for k, v in fill.items() if k in SECTIONS}, **entry, name: section}
            drives[(vehicle, drive)] = entry
        return {"hour": hour, "drives": [drives[k] for k in sorted(drives)]}

    update_json(store, L.ledger_hour_key(hour), update)


def _unindex(store: ObjectStore, hour: str, vehicle: str, drive: str) -> None:
    def update(index: dict | None) -> dict:
        index = index or {"hour": hour, "drives": []}
        keep = [d for d in index["drives"] if (d["vehicle"], d["drive"]) != (vehicle, drive)]
        return {**index, "drives": keep}

    update_json(store, L.ledger_hour_key(hour), update)


def write_section(
    store: ObjectStore,
    vehicle: str,
    drive: str,
    name: str,
    section: dict[str, Any],
    hour: str | None = None,
    *,
    index: bool = True,
) -> DriveState:
    """Set one stage's section of a drive, in its hour's index and then in its record (a
    crash in between leaves the record behind, so the stage does the drive again). The
    ingest section names the hour (a drive re-uploaded in another hour moves there); other
    stages keep the record's hour, or give ``hour`` for a drive the ledger has no record of.
    ``index=False``: the record only; a stage that writes a whole hour indexes it once at the
    end (``index_hour``), since an index rewritten per drive costs O(drives²) bytes an hour."""
    if name not in SECTIONS:
        raise ValueError(f"no ledger section {name!r}; the sections are {', '.join(SECTIONS)}")
    section = {k: v for k, v in section.items() if k != "skipped"}
    current = read_json(store, L.ledger_key(vehicle, drive))
    before = DriveState.of(current).hour if current else None
    at = section.get("hour") if name == INGEST else (before or hour)
    if at is not None and index:  # (a drive of no arrival hour is in no index)
        _index_drives(store, at, [(vehicle, drive, name, section, current or {})])
    if before and at and before != at:
        _unindex(store, before, vehicle, drive)
    record = update_json(
        store, L.ledger_key(vehicle, drive), lambda r: _set(r, vehicle, drive, name, section)
    )
    return DriveState.of(record)


def index_hour(store: ObjectStore, hour: str, name: str, drives: Iterable[tuple[str, str]]) -> None:
    """Copy the ``name`` sections of ``drives`` from their records into ``hour``'s index, in
    one update: what a stage does once at the end of an hour after ``write_section(...,
    index=False)`` per drive. The records are the truth: a drive that was skipped (done
    before), set aside, or whose record names another hour (a duplicate upload) is indexed as
    its record says, and a crash before this call is repaired when the stage runs the hour
    again."""
    keys = sorted(set(drives))
    with ThreadPoolExecutor(max_workers=min(16, len(keys) or 1)) as pool:
        records = list(pool.map(lambda k: read_json(store, L.ledger_key(*k)), keys))
    rows = [
        (r["vehicle"], r["drive"], name, r[name], r)
        for r in records
        if r and r.get(name) is not None and (DriveState.of(r).hour or hour) == hour
    ]
    if rows:
        _index_drives(store, hour, rows)


# -- reading ----------------------------------------------------------------------------------
def hour_index(store: ObjectStore, hour: str) -> list[dict[str, Any]] | None:
    """The raw entries of an hour's index (``None`` when it has none)."""
    index = read_json(store, L.ledger_hour_key(hour))
    return None if index is None else index["drives"]


def drive(store: ObjectStore, vehicle: str, drive: str) -> DriveState | None:
    """One drive's state (one request); ``None`` when the lake has no record of it."""
    record = read_json(store, L.ledger_key(vehicle, drive))
    return DriveState.of(record) if record else None


def at_version(state: DriveState | None, version: str | None) -> bool:
    """The one answer to "is the drive still at ``version``?" (the version a clip was mined
    from): the lake has it, still compliant, with nothing changed since."""
    return state is not None and state.version is not None and state.version == version


def section(store: ObjectStore, vehicle: str, drive_id: str, name: str) -> dict[str, Any] | None:
    """One section of one drive's record, or ``None``."""
    state = drive(store, vehicle, drive_id)
    return state.section(name) if state else None


def hour_drives(store: ObjectStore, hour: str) -> list[DriveState]:
    """The drives that arrived in ``hour`` (one request), sorted by vehicle and drive."""
    return [DriveState.of(d) for d in hour_index(store, hour) or []]


def drives_of_day(store: ObjectStore, day: str) -> list[DriveState]:
    """The drives that arrived on ``day`` (``YYYY-MM-DD``): one request per hour."""
    return [s for hour in L.day_hours(day) for s in hour_drives(store, hour)]


def day_state(store: ObjectStore, day: str) -> str | None:
    """A hash of what curation reads of ``day`` (its compliant drives, each at its version);
    ``None`` while no drive of the day has been through compliance."""
    return day_state_of(drives_of_day(store, day))


def day_state_of(states: list[DriveState]) -> str | None:
    """``day_state`` of a day's drives already read."""
    if not any(s.compliance for s in states):
        return None
    return sha256_json(sorted([s.vehicle, s.drive, s.version] for s in states if s.compliance))[:16]


def hours(store: ObjectStore) -> list[str]:
    """Every arrival hour that has an index, as an hourly partition key, sorted."""
    return sorted(
        h for o in store.list(L.LEDGER_HOURS) if (h := L.parse_ledger_hour_key(o.key)) is not None
    )


def all_drives(store: ObjectStore) -> Iterator[DriveState]:
    """Every drive of the lake, hour by hour (one request per hour)."""
    for hour in hours(store):
        yield from hour_drives(store, hour)


def owners(store: ObjectStore, drive_id: str) -> set[str]:
    """The vehicles that have a drive called ``drive_id``."""
    return {
        parsed[0]
        for o in store.list(L.LEDGER_DRIVES)
        if (parsed := L.parse_drive_record_key(o.key)) and parsed[1] == drive_id
    }


# -- an old lake --------------------------------------------------------------------------------
def migrate(store: ObjectStore) -> int:
    """Fold the per-stage records of a lake written before the ledger into it (they stay
    where they are, unread): every section a drive's ledger record lacks is taken from its
    old record. Returns how many drives gained a section; a second run finds nothing to do."""
    legacy = {
        INGEST: L.drive_record_key,
        VERDICT: L.verdict_key,
        COMPLIANCE: L.compliance_key,
        LABELS: L.labels_record_key,
    }
    changed = 0
    for o in store.list(L.LEGACY_DRIVE_RECORDS):
        parsed = L.parse_drive_record_key(o.key)
        if parsed is None:
            continue
        current = read_json(store, L.ledger_key(*parsed)) or {}
        missing = {
            name: value
            for name, key in legacy.items()
            if name not in current and (value := read_json(store, key(*parsed))) is not None
        }
        hour = (current.get(INGEST) or missing.get(INGEST) or {}).get("hour")
        if not missing or hour is None:
            continue
        for name in SECTIONS:  # ingest first: it names the hour
            if name in missing:
                write_section(store, *parsed, name, missing[name], hour)
        changed += 1
    return changed
