"""Check every drive that arrived in one hour against the suites; record verdicts in the lake."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import duckdb
import pyarrow as pa

from dataloop.infra.workers import DrivesFailed, Failure, map_drives, worker_count
from dataloop.ingest.tables import SCHEMAS, read_table, schema_fingerprint
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_json
from dataloop.lake.ledger import QUARANTINE, QUARANTINED, RECOVERED, USABLE, WARN
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectStore
from dataloop.quality.gx_checks import run_gx
from dataloop.quality.sql_checks import to_sql
from dataloop.quality.suites import ROW_WISE_GX, Suites
from dataloop.quality.verdicts import CheckResult, drive_verdict, hour_fitness


@dataclass
class HourQuality:
    hour: str
    suites_version: str
    drives: list[dict[str, Any]] = field(default_factory=list)
    fit: bool = True
    reasons: list[str] = field(default_factory=list)

    @property
    def data_version(self) -> str:
        return sha256_json(
            [
                self.suites_version,
                self.fit,
                sorted(
                    (d["vehicle"], d["drive"], d["verdict"], d["failures"]) for d in self.drives
                ),
            ]
        )[:32]

    def count(self, verdict: str) -> int:
        return sum(d["verdict"] == verdict for d in self.drives)

    @property
    def usable(self) -> list[dict[str, Any]]:
        return [d for d in self.drives if d["verdict"] != QUARANTINE]


def _load(store: ObjectStore, records: list[dict]) -> dict[str, pa.Table]:
    """The hour's tables, every drive concatenated, with each row's position in its drive."""
    tables: dict[str, list[pa.Table]] = defaultdict(list)
    for record in records:
        for name, info in record["tables"].items():
            t = read_table(store, info["key"])
            tables[name].append(t.append_column("row", pa.array(range(t.num_rows), pa.int64())))
    return {
        name: pa.concat_tables(tables[name])
        if tables[name]
        else SCHEMAS[name].append(pa.field("row", pa.int64())).empty_table()
        for name in SCHEMAS
    }


def _engine(e, forced: str | None) -> str:
    if e.sql or e.type not in ROW_WISE_GX or forced == "duckdb":
        return "duckdb"
    return forced or e.engine


def run_checks(tables: dict[str, pa.Table], suites: Suites, engine: str | None = None):
    """Every expectation over the hour's tables, on its own engine or, with ``engine``, on
    that one wherever it can run; returns a CheckResult per expectation and drive."""
    # One thread: CPU per drive-hour is the budget, and these queries are too small to gain
    # from more.
    con = duckdb.connect(config={"threads": 1})
    for name, table in tables.items():
        con.register(name, table)
    totals = {
        name: dict(
            ((v, d), n)
            for v, d, n in con.sql(
                f"SELECT vehicle_id, drive_id, count(*) FROM {name} GROUP BY 1, 2"
            ).fetchall()
        )
        for name in tables
    }
    drives = {k for per_table in totals.values() for k in per_table}
    results: list[CheckResult] = []

    def emit(e, counts: dict, observed: dict):
        for v, d in sorted(drives):
            results.append(
                CheckResult(
                    e.key,
                    e.family,
                    e.severity,
                    _engine(e, engine),
                    v,
                    d,
                    int(counts.get((v, d), 0) or 0),
                    totals[e.table].get((v, d), 0),
                    observed.get((v, d)),
                    e.mostly,
                )
            )

    by_engine: dict[str, list] = {"duckdb": [], "gx": []}
    for e in suites.expectations:
        by_engine[_engine(e, engine)].append(e)
    for e in by_engine["duckdb"]:
        rows = con.sql(to_sql(e, tables[e.table].schema)).fetchall()
        emit(e, {(v, d): u for v, d, u, _ in rows}, {(v, d): o for v, d, _, o in rows})
    by_table: dict[str, list] = defaultdict(list)
    for e in by_engine["gx"]:
        by_table[e.table].append(e)
    for name, expectations in by_table.items():
        columns = {"vehicle_id", "drive_id"}
        for e in expectations:
            columns.update(c for c in (e.kwargs.get("column"),) if c)
            columns.update(e.kwargs.get("column_list", []))
        frame = tables[name].select(sorted(columns)).to_pandas()
        for e, counts, _ in run_gx(name, frame, expectations):
            emit(e, counts, {})
    return results


def fleet_checks(record: dict[str, Any], fleet: dict[str, Any]) -> list[CheckResult]:
    """One result per table the fleet profile requires: failed where the drive has no rows."""
    key = (record["vehicle"], record["drive"])
    return [
        CheckResult(
            f"fleet.{name}",
            "missing_table",
            QUARANTINE,
            "-",
            *key,
            int(not rows),
            1,
            rows or "no rows",
        )
        for name in fleet["required_tables"]
        for rows in [record["tables"].get(name, {}).get("rows", 0)]
    ]


def shard(records: list[dict], n: int) -> list[list[dict]]:
    """``records`` in at most ``n`` runs of consecutive drives, as even as can be."""
    n = max(1, min(n, len(records)))
    size, extra = divmod(len(records), n)
    bounds = [k * size + min(k, extra) for k in range(n + 1)]
    return [records[a:b] for a, b in pairwise(bounds) if b > a]


def check_shard(store: ObjectStore, records: list[dict], suites: Suites) -> list[CheckResult]:
    """Every expectation over some drives of an hour: one worker's share. Every check is
    per drive (grouped, or windowed, by vehicle and drive; GX's are row-wise), so a drive's
    results do not depend on the drives it is checked with."""
    return run_checks(_load(store, records), suites)


def _refused(entry: dict[str, Any]) -> dict[str, Any]:
    """The verdict of an upload that ingest refused: quarantine, for the ingest's reasons."""
    return {
        "vehicle": entry.get("vehicle"),
        "drive": entry.get("drive"),
        "verdict": QUARANTINE,
        "stage": "ingest",
        "checks": 0,
        "failures": [
            {
                "expectation": f"ingest.{code}",
                "family": "ingest",
                "severity": QUARANTINE,
                "unexpected": 1,
                "total": 1,
                "observed": code,
                "engine": "-",
            }
            for code in entry.get("reasons") or [QUARANTINED]
        ],
    }


def check_hour(store: ObjectStore, hour: str, suites: Suites) -> HourQuality:
    """Verdicts for the hour's drives, written to the lake (per drive and per hour). The
    drives are checked in ``DATALOOP_WORKERS`` shards of consecutive drives, each in a
    worker process (GX's cost is per validation, so a shard, not a drive, is the unit); a
    shard that fails fails the hour (``DrivesFailed``) once the others' verdicts are written."""
    quality = HourQuality(hour, suites.version)
    # Uploads refused at ingest have no ledger record (their keys may name no drive): the
    # ingest summary is theirs, and their reasons are their verdicts.
    summary = read_json(store, L.hour_record_key(hour)) or {"drives": []}
    quality.drives += [_refused(e) for e in summary["drives"] if e["status"] not in USABLE]
    records, drifted = [], []
    for state in ledger.hour_drives(store, hour):
        if not state.usable:
            continue
        drift = [
            name
            for name, info in state.table_infos.items()
            if info.get("schema") != schema_fingerprint(SCHEMAS[name])
        ]
        if drift:
            drifted.append(f"{state.vehicle}/{state.drive} ({', '.join(drift)})")
            continue
        records.append(state.ingest)
    shards = shard(records, worker_count())
    per_drive: dict[tuple[str, str], list[CheckResult]] = defaultdict(list)
    failed: dict[tuple[str, str], Failure] = {}
    for part, outcome in zip(shards, map_drives(check_shard, store, shards, suites), strict=True):
        for r in [] if isinstance(outcome, Failure) else outcome:
            per_drive[(r.vehicle, r.drive)].append(r)
        if isinstance(outcome, Failure):
            failed |= {(d["vehicle"], d["drive"]): outcome for d in part}
    records = [r for r in records if (r["vehicle"], r["drive"]) not in failed]
    for record in records:
        key = (record["vehicle"], record["drive"])
        per_drive[key] += fleet_checks(record, suites.fleet)
        if record["status"] == RECOVERED:  # only the readable part was ingested: say so
            per_drive[key].append(
                CheckResult("ingest.truncated", "ingest", WARN, "-", *key, 1, 1, RECOVERED)
            )
        v = {
            "vehicle": key[0],
            "drive": key[1],
            "stage": "quality",
            **drive_verdict(per_drive.get(key, [])),
        }
        quality.drives.append(v)
        ledger.write_section(
            store,
            *key,
            ledger.VERDICT,
            {
                **v,
                "hour": hour,
                "suites_version": suites.version,
                "manifest_key": record["manifest_key"],
            },
            index=False,
        )
        if v["verdict"] == QUARANTINE:
            write_json(
                store,
                L.quarantine_key(record["manifest_key"]),
                {
                    "status": QUARANTINED,
                    "stage": "quality",
                    "vehicle": key[0],
                    "drive": key[1],
                    "manifest_key": record["manifest_key"],
                    "hour": hour,
                    "reasons": [
                        {"code": f["family"], "detail": f["expectation"]}
                        for f in v["failures"]
                        if f["severity"] == QUARANTINE
                    ],
                },
            )
    ledger.index_hour(store, hour, ledger.VERDICT, [(r["vehicle"], r["drive"]) for r in records])
    if failed:  # the hour's fitness needs every drive: the re-run judges it
        raise DrivesFailed("quality", [(f"{v}/{d}", f) for (v, d), f in failed.items()])
    quality.fit, quality.reasons = hour_fitness(quality.drives, suites.policy, drifted)
    write_json(
        store,
        L.hour_verdicts_key(hour),
        {
            "hour": hour,
            "fit": quality.fit,
            "reasons": quality.reasons,
            "suites_version": suites.version,
            "data_version": quality.data_version,
            "drives": quality.drives,
        },
    )
    return quality
