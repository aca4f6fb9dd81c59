"""What the lake knows about drives: the ledger (read hour by hour, from its indexes) and the
quarantine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb

from dataloop.ingest.tables import SCHEMAS
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.query import register_table
from dataloop.lake.store import ObjectStore


def _records(store: ObjectStore, prefix: str) -> Iterator[dict[str, Any]]:
    for info in store.list(prefix):
        if info.key.endswith(".json"):
            yield json.loads(store.get(info.key))


def drive_records(store: ObjectStore) -> list[dict[str, Any]]:
    """One ingest section per (vehicle, drive): the upload that counts and what became of it
    (one request per arrival hour)."""
    return [s.ingest for s in ledger.all_drives(store) if s.ingest]


def quarantine_records(store: ObjectStore) -> list[dict[str, Any]]:
    return list(_records(store, L.QUARANTINE_RECORDS))


def drives_overview(store: ObjectStore) -> list[dict[str, Any]]:
    """Every drive and every quarantined upload: stage reached, verdict, reasons."""
    states = list(ledger.all_drives(store))
    drives = [s.ingest for s in states if s.ingest]
    counted = {d["manifest_key"] for d in drives}
    rows = drives + [
        q
        for q in quarantine_records(store)
        if q["manifest_key"] not in counted and q.get("stage", "ingest") == "ingest"
    ]
    verdicts = {(s.vehicle, s.drive): s.verdict for s in states if s.verdict}
    out = []
    for r in rows:
        v = verdicts.get((r.get("vehicle"), r.get("drive")))
        reasons = list(r.get("reasons", []))
        if v and v.get("manifest_key") == r["manifest_key"]:
            stage, status = "quality", v["verdict"]
            reasons += [
                {
                    "code": f["family"],
                    "detail": f"{f['expectation']} {f['unexpected']}/{f['total']}",
                }
                for f in v["failures"]
            ]
        else:
            stage, status = "ingest", r["status"]
        out.append(
            {
                "vehicle": r.get("vehicle"),
                "drive": r.get("drive"),
                "stage": stage,
                "status": status,
                "reasons": reasons,
                "hour": r.get("hour"),
                "duration_s": r.get("duration_s"),
                "bytes": r.get("bytes"),
                "manifest_key": r["manifest_key"],
            }
        )
    return sorted(out, key=lambda r: (str(r["vehicle"]), str(r["drive"]), r["manifest_key"]))


def table_files(records: list[dict[str, Any]], table: str) -> list[str]:
    """Keys of the current Parquet files of ``table``, one per usable drive record."""
    return [
        d["tables"][table]["key"]
        for d in records
        if d.get("status") in ("ingested", "recovered") and table in d.get("tables", {})
    ]


def connect_tables(store: ObjectStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per decoded table (current versions only)."""
    con = duckdb.connect()
    records = drive_records(store)
    for table, schema in SCHEMAS.items():
        register_table(con, store, table, table_files(records, table), schema)
    return con
