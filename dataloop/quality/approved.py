"""The hour's approved drives: those that passed quality or only warned, the one list every
later stage reads (written here, from the hour's verdicts, and read here only)."""

from __future__ import annotations

from typing import Any

from dataloop.lake.layout import approved_key, hour_verdicts_key
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectStore
from dataloop.quality.verdicts import QUARANTINE


def select_approved(verdicts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(vehicle, drive)`` of every verdict that is not quarantine, sorted."""
    return sorted((d["vehicle"], d["drive"]) for d in verdicts if d["verdict"] != QUARANTINE)


def approve_hour(store: ObjectStore, hour: str) -> list[tuple[str, str]]:
    """Select the hour's approved drives from its recorded verdicts (none when it has none)
    and write the list at ``approved_key(hour)``."""
    record = read_json(store, hour_verdicts_key(hour)) or {"drives": []}
    drives = select_approved(record["drives"])
    write_json(store, approved_key(hour), {"hour": hour, "drives": [list(d) for d in drives]})
    return drives


def read_approved(store: ObjectStore, hour: str) -> list[tuple[str, str]]:
    """The hour's approved ``(vehicle, drive)`` as ``approve_hour`` wrote them (none yet: [])."""
    record = read_json(store, approved_key(hour)) or {"drives": []}
    return [(v, d) for v, d in record["drives"]]
