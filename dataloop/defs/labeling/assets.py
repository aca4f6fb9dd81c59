"""Labeling: offboard auto-labels for every compliant drive, per arrival hour."""

import dagster as dg

from dataloop.defs.ingest.partitions import arrival_hours
from dataloop.defs.quality.compliance import compliant_drives
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.defs.set_aside import set_aside_metadata
from dataloop.labeling.hour import METRICS, label_hour, metrics_by_condition
from dataloop.labeling.offboard import load_params
from dataloop.lake.hashing import sha256_json
from dataloop.rules import rules_dir, snapshot

PARAMS = snapshot(rules_dir() / "labeling" / "offboard.yaml", load_params)
_COLUMNS = ["conditions", "drives"] + [f"{s}_{m}" for m in METRICS for s in ("onboard", "offboard")]


@dg.asset(
    partitions_def=arrival_hours,
    deps=[compliant_drives],
    group_name="labeling",
    # The labeller's revision and parameters: editing assets/labeling/offboard.yaml marks
    # labelled hours stale, and a backfill relabels.
    code_version=PARAMS.version(lambda p: f"offboard.{p.version}"),
    kinds={"python", "parquet"},
    tags={"dataloop/stage": "labeling"},
)
def offboard_labels(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Offboard object labels for the hour's compliant drives: associated across dropouts,
    RTS-smoothed with past and future, gaps filled, ghosts removed, a confidence per track;
    scored against the simulator's ground truth where a drive carries it."""
    params = rules_or_fail(PARAMS)
    records = label_hour(lake.store(), context.partition_key, params)
    aside = [(r["vehicle"], r["drive"], r["set_aside"]) for r in records if "set_aside" in r]
    records = [r for r in records if "set_aside" not in r]
    table = metrics_by_condition(records)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            sha256_json(
                [sorted((r["vehicle"], r["drive"], r["labels"]) for r in records), sorted(aside)]
            )[:32]
        ),
        metadata={
            "drives": dg.MetadataValue.int(len(records)),
            **set_aside_metadata(aside),
            "tracks": dg.MetadataValue.int(sum(r["tracks"] for r in records)),
            "labeller_version": dg.MetadataValue.text(params.version),
            "onboard_vs_offboard": dg.MetadataValue.table(
                [dg.TableRecord({k: row.get(k) for k in _COLUMNS}) for row in table],
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn(c, "string" if c == "conditions" else "float")
                        for c in _COLUMNS
                    ]
                ),
            ),
        },
    )
