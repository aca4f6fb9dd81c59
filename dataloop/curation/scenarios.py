"""Scenario mining: the SQL files of ``assets/scenarios/`` run by DuckDB over one arrival
day's compliant drives; every hit becomes a clip of the day's scenario index.

Each query sees these views and returns ``vehicle_id, drive_id, start_t, end_t, severity,
tags``, one row per hit; hits of one scenario on one drive that overlap merge into one clip.

- ``tracks``: objects around the ego, one row per track and time. Offboard labels where the
  drive has them (consistent ids, smoothed), else the car's own object list.
- ``vehicle_state``, ``events``: the drive's own tables.
- ``ego_pose``: the ego's path dead-reckoned from CAN speed and yaw rate (``x``, ``y`` in m,
  ``heading`` in rad, from the drive's start): what a query needs to tell an object's own
  motion from the ego's (in the ego frame, everything moves sideways when the ego changes
  lanes).
- ``drives``: one row per drive with ``road``, ``conditions``, ``start_t``, ``end_t``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dataloop.curation.clips import CLIP_SCHEMA, clip_id
from dataloop.ingest.tables import SCHEMAS, lacking, read_table, to_parquet
from dataloop.labeling.offboard import LABEL_SCHEMA
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.engines import DuckTables, Tables, open_tables
from dataloop.lake.hashing import sha256_json
from dataloop.lake.layout import day_index_key
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.quality.suites import rules_dir

NEEDS = ("vehicle_state",)
"""Every view but ``tracks`` stands on the CAN motion; a drive without objects or labels
still mines (its ego-only scenarios: a hard brake)."""

_TRACK_COLUMNS = "vehicle_id, drive_id, t, {id} AS track_id, object_class, x, y, vx, vy, " + (
    "length, width, heading"
)


_EGO_POSE = """WITH s AS (
    SELECT vehicle_id, drive_id, t, speed_mps, yaw_rate_radps, turn_signal,
           least(greatest(coalesce(epoch(t) - lag(epoch(t)) OVER w, 0), 0), 0.1) AS dt
    FROM vehicle_state
    WHERE isfinite(speed_mps) AND isfinite(yaw_rate_radps)
    WINDOW w AS (PARTITION BY vehicle_id, drive_id ORDER BY t)
), h AS (
    SELECT *, sum(yaw_rate_radps * dt) OVER w AS heading
    FROM s
    WINDOW w AS (PARTITION BY vehicle_id, drive_id ORDER BY t ROWS UNBOUNDED PRECEDING)
)
SELECT vehicle_id, drive_id, t, speed_mps, yaw_rate_radps, turn_signal, heading,
       sum(speed_mps * cos(heading) * dt) OVER w AS x,
       sum(speed_mps * sin(heading) * dt) OVER w AS y
FROM h
WINDOW w AS (PARTITION BY vehicle_id, drive_id ORDER BY t ROWS UNBOUNDED PRECEDING)"""


@dataclass(frozen=True)
class Scenario:
    name: str
    sql: str


def load_scenarios(folder: Path | None = None) -> list[Scenario]:
    """Every ``*.sql`` of the scenario library, by name."""
    folder = folder or rules_dir() / "scenarios"
    return [Scenario(p.stem, p.read_text()) for p in sorted(folder.glob("*.sql"))]


def library_version(scenarios: list[Scenario]) -> str:
    """Changes whenever a query is edited, added or removed: mined days become stale."""
    return sha256_json([[s.name, s.sql] for s in scenarios])[:16]


def curatable(state: ledger.DriveState, needs: tuple[str, ...] = NEEDS) -> dict[str, Any]:
    """A drive as mining, training and simulation read it: ids, version, road and
    conditions, table and label keys, and what ``needs`` would set it aside for
    (``set_aside``: ``no_<table>``, or ``None``)."""
    meta = state.log_metadata
    return {
        "vehicle_id": state.vehicle,
        "drive_id": state.drive,
        "drive_version": state.version,
        "road": meta.get("road", "unknown"),
        "conditions": meta.get("conditions", "unknown"),
        "model_version": meta.get("model_version", "unknown"),
        "tables": state.tables,
        "labels": state.labels_key,
        "set_aside": lacking(state.table_infos, needs),
    }


def open_views(
    store: ObjectStore, drives: list[dict[str, Any]], engine: str | None = None
) -> Tables:
    """The views the scenario queries read, on ``engine`` (``DATALOOP_TABLE_ENGINE``)."""
    tables = open_tables(store, engine)
    for name in ("vehicle_state", "events", "objects"):
        tables.parquet(name, [d["tables"][name] for d in drives], SCHEMAS[name])
    tables.parquet("labels", [d["labels"] for d in drives if d["labels"]], LABEL_SCHEMA)
    labelled = pa.table(
        {
            "vehicle_id": [d["vehicle_id"] for d in drives if d["labels"]],
            "drive_id": [d["drive_id"] for d in drives if d["labels"]],
        },
        schema=pa.schema([("vehicle_id", pa.string()), ("drive_id", pa.string())]),
    )
    tables.arrow("labelled", labelled)
    tables.view(
        "tracks",
        f"""SELECT {_TRACK_COLUMNS.format(id="track_id")} FROM labels
        UNION ALL
        SELECT {_TRACK_COLUMNS.format(id="object_id")} FROM objects o
        WHERE NOT EXISTS (SELECT 1 FROM labelled l
                          WHERE l.vehicle_id = o.vehicle_id AND l.drive_id = o.drive_id)""",
    )
    # three windows over every CAN row: the costliest view (cut_in reads it twice), so once
    tables.table("ego_pose", _EGO_POSE)
    meta = pa.table(
        {
            c: [d[c] for d in drives]
            for c in ("vehicle_id", "drive_id", "drive_version", "road", "conditions")
        },
        schema=pa.schema(
            [(c, pa.string()) for c in ("vehicle_id", "drive_id", "drive_version")]
            + [("road", pa.string()), ("conditions", pa.string())]
        ),
    )
    tables.arrow("drive_meta", meta)
    tables.view(
        "drives",
        """SELECT m.*, s.start_t, s.end_t FROM drive_meta m JOIN (
            SELECT vehicle_id, drive_id, min(t) AS start_t, max(t) AS end_t
            FROM vehicle_state GROUP BY vehicle_id, drive_id
        ) s ON m.vehicle_id = s.vehicle_id AND m.drive_id = s.drive_id""",
    )
    return tables


def connect(store: ObjectStore, drives: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views the scenario queries read."""
    return cast(DuckTables, open_views(store, drives, "duckdb")).con


def _merge(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Overlapping hits of one scenario on one drive become one clip: the union of their
    spans, the highest severity, every tag."""
    merged: list[dict[str, Any]] = []
    for h in sorted(hits, key=lambda h: (h["vehicle_id"], h["drive_id"], h["start_t"])):
        last = merged[-1] if merged else None
        if (
            last
            and (last["vehicle_id"], last["drive_id"]) == (h["vehicle_id"], h["drive_id"])
            and h["start_t"] <= last["end_t"]
        ):
            last["end_t"] = max(last["end_t"], h["end_t"])
            last["severity"] = max(last["severity"], h["severity"])
            last["tags"] |= set(h["tags"])
        else:
            merged.append({**h, "tags": set(h["tags"])})
    return merged


def mine(tables: Tables, scenarios: list[Scenario], day: str) -> tuple[pa.Table, dict[str, int]]:
    """Run every scenario over the drives of ``tables`` (``open_views``): the clips, and hit
    counts per scenario."""
    columns = ("drive_version", "road", "conditions", "start_t", "end_t")
    meta = {
        (r["vehicle_id"], r["drive_id"]): tuple(r[c] for c in columns)
        for r in tables.query(
            "SELECT vehicle_id, drive_id, drive_version, road, conditions, start_t, end_t "
            "FROM drives"
        ).to_pylist()
    }
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for scenario in scenarios:
        hits = tables.query(scenario.sql).to_pylist()
        clips = _merge([h for h in hits if (h["vehicle_id"], h["drive_id"]) in meta])
        counts[scenario.name] = len(clips)
        for c in clips:
            version, road, conditions, start, end = meta[(c["vehicle_id"], c["drive_id"])]
            c["start_t"], c["end_t"] = max(c["start_t"], start), min(c["end_t"], end)
            start_ns = int(pa.scalar(c["start_t"], CLIP_SCHEMA.field("start_t").type).value)
            rows.append(
                {
                    "clip_id": clip_id(c["vehicle_id"], c["drive_id"], scenario.name, start_ns),
                    "vehicle_id": c["vehicle_id"],
                    "drive_id": c["drive_id"],
                    "drive_version": version,
                    "scenario": scenario.name,
                    "start_t": c["start_t"],
                    "end_t": c["end_t"],
                    "severity": round(float(c["severity"]), 4),
                    "tags": sorted(str(t) for t in c["tags"]),
                    "road": road,
                    "conditions": conditions,
                    "day": day,
                }
            )
    table = pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)
    order = pc.sort_indices(
        table,
        [
            ("vehicle_id", "ascending"),
            ("drive_id", "ascending"),
            ("start_t", "ascending"),
            ("scenario", "ascending"),
        ],
    )
    return table.take(order), counts


def minable(states: list[ledger.DriveState]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The drives of ``states`` that mining reads (``curatable``), and those it sets aside
    (vehicle, drive, reason)."""
    drives = [curatable(s) for s in states if s.version is not None]
    aside = sorted(
        [d["vehicle_id"], d["drive_id"], d["set_aside"]] for d in drives if d["set_aside"]
    )
    return [d for d in drives if not d["set_aside"]], aside


def mine_day(
    store: ObjectStore, day: str, scenarios: list[Scenario], engine: str | None = None
) -> dict[str, Any]:
    """Mine one arrival day on ``engine`` (``DATALOOP_TABLE_ENGINE``) into an immutable clip
    table and point the day's index at it."""
    states = ledger.drives_of_day(store, day)
    drives, aside = minable(states)
    tables = open_views(store, drives, engine)
    clips, counts = mine(tables, scenarios, day)
    data, sha = to_parquet(clips)
    key = L.day_clips_key(day, sha)
    with contextlib.suppress(ObjectExists):
        store.put(key, data)
    record = {
        "day": day,
        "state": ledger.day_state_of(states),
        "clips_key": key,
        "clips": clips.num_rows,
        "drives": len(drives),
        "set_aside": aside,
        "per_scenario": counts,
        "engine": tables.engine,
        "library_version": library_version(scenarios),
        "drive_versions": sorted(
            [d["vehicle_id"], d["drive_id"], d["drive_version"]] for d in drives
        ),
    }
    write_json(store, day_index_key(day), record)
    return record


def index_days(store: ObjectStore) -> list[str]:
    """Every arrival day that has a scenario index."""
    return L.scenario_index_days([i.key for i in store.list(L.SCENARIO_DAYS)])


def read_scenario_index(store: ObjectStore, days: list[str] | None = None) -> pa.Table:
    """The clips of ``days`` (default: every mined day)."""
    tables = [CLIP_SCHEMA.empty_table()]
    for day in days if days is not None else index_days(store):
        record = read_json(store, day_index_key(day))
        if record:
            tables.append(read_table(store, record["clips_key"]))
    return pa.concat_tables(tables)
