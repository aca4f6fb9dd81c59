"""The hour's approved drives: the list compliance works through, written once quality has
judged the hour. Whether a drive is approved is the ledger's answer (``DriveState.approved``:
it passed or only warned, for the upload that counts); this module only lists the hour's."""

from __future__ import annotations

from dataloop.lake import ledger
from dataloop.lake.layout import approved_key
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectStore


def approve_hour(store: ObjectStore, hour: str) -> list[tuple[str, str]]:
    """The hour's approved ``(vehicle, drive)``, sorted, from its ledger index (one request),
    written at ``approved_key(hour)``."""
    drives = [(s.vehicle, s.drive) for s in ledger.hour_drives(store, hour) if s.approved]
    write_json(store, approved_key(hour), {"hour": hour, "drives": [list(d) for d in drives]})
    return drives


def read_approved(store: ObjectStore, hour: str) -> list[tuple[str, str]]:
    """The hour's approved ``(vehicle, drive)`` as ``approve_hour`` wrote them (none yet: [])."""
    record = read_json(store, approved_key(hour)) or {"drives": []}
    return [(v, d) for v, d in record["drives"]]
