"""Label every compliant drive of an hour; score against simulator ground truth where the log
carries it (an MCAP attachment written by the fleet simulator)."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from mcap.reader import make_reader

from dataloop.fleet.contract import GROUND_TRUTH_OBJECTS
from dataloop.infra.workers import DrivesFailed, map_drives, split
from dataloop.ingest.tables import lacking, put_table, read_table
from dataloop.labeling.offboard import Params, label_drive
from dataloop.labeling.score import score
from dataloop.lake import ledger
from dataloop.lake.ledger import DriveState
from dataloop.lake.ranged import open_ranged
from dataloop.lake.store import ObjectStore

NEEDS = ("objects", "vehicle_state")
"""Offboard labels are built from the car's object list and its CAN motion."""
METRICS = ("position_rmse_m", "id_switches_per_100_tracks", "false_positive_rate", "missed_rate")


def ground_truth(store: ObjectStore, log_key: str) -> pa.Table | None:
    """The simulator's true objects, read from the log's attachment by ranged reads."""
    with open_ranged(store, log_key) as f:
        try:
            for attachment in make_reader(f).iter_attachments():
                if attachment.name == GROUND_TRUTH_OBJECTS:
                    return pq.read_table(io.BytesIO(attachment.data))
        except Exception:  # noqa: BLE001 - a log without a readable summary has no truth
            return None
    return None


def label_hour(store: ObjectStore, hour: str, params: Params) -> list[dict[str, Any]]:
    """Offboard labels for the hour's compliant drives (skipping those labelled with these
    parameters already), in ``DATALOOP_WORKERS`` processes; returns a record per drive, with
    scores where truth exists, or with ``set_aside`` (why not) for a drive that lacks a table
    labelling needs. A drive whose labelling failed fails the hour (``DrivesFailed``) once
    the others are recorded."""
    states = [s for s in ledger.hour_drives(store, hour) if s.compliant]
    records, failures = split(map_drives(label_one, store, states, params, hour))
    ledger.index_hour(store, hour, ledger.LABELS, [(r["vehicle"], r["drive"]) for r in records])
    if failures:
        raise DrivesFailed("labels", [(f"{f.item.vehicle}/{f.item.drive}", f) for f in failures])
    return records


def label_one(store: ObjectStore, state: DriveState, params: Params, hour: str) -> dict[str, Any]:
    """One compliant drive's labels record, written to its ledger section (the hour writes
    the index)."""
    vehicle, drive = state.vehicle, state.drive
    done = state.labels
    if done and done["labeller_version"] == params.version:
        return {**done, "skipped": True}
    drive_record = state.ingest
    tables = drive_record["tables"]
    if reason := lacking(tables, NEEDS):
        return {"vehicle": vehicle, "drive": drive, "set_aside": reason}
    objects = read_table(store, tables["objects"]["key"])
    labels = label_drive(
        objects, read_table(store, tables["vehicle_state"]["key"]), params, vehicle, drive
    )
    labels_key = put_table(store, "labels", vehicle, drive, labels)["key"]
    record: dict[str, Any] = {
        "vehicle": vehicle,
        "drive": drive,
        "labeller_version": params.version,
        "labeller_params": params.raw,
        "labels": labels_key,
        "tracks": len(set(labels.column("track_id").to_pylist())),
        "conditions": drive_record.get("log_metadata", {}).get("conditions", "unknown"),
    }
    truth = ground_truth(store, drive_record["log_key"])
    if truth is not None:
        record["onboard"] = score(objects, truth, "object_id")
        record["offboard"] = score(labels, truth, "track_id")
    ledger.write_section(store, vehicle, drive, ledger.LABELS, record, hour, index=False)
    return record


def metrics_by_condition(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean onboard and offboard metrics per condition, over the drives that have truth."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if "offboard" in r:
            groups[r["conditions"]].append(r)
    rows = []
    for condition, rs in sorted(groups.items()):
        row: dict[str, Any] = {"conditions": condition, "drives": len(rs)}
        for side in ("onboard", "offboard"):
            for m in METRICS:
                values = [r[side][m] for r in rs if r[side][m] == r[side][m]]  # drop NaN
                row[f"{side}_{m}"] = round(sum(values) / len(values), 4) if values else None
        rows.append(row)
    return rows
