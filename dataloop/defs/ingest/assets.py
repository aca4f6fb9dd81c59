"""Ingest: raw drive logs -> decoded lake tables, per arrival hour."""

from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from dataloop.defs.ingest.partitions import arrival_hours
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.fleet.contract import CONTRACT_VERSION
from dataloop.infra.executors import hour_shards, stage_executor
from dataloop.ingest.adapters import installed
from dataloop.ingest.decode import DECODER_VERSION
from dataloop.ingest.hour import (
    HourReport,
    ingest_uploads,
    manifests_in_hour,
    record_hour,
    shard_uploads,
)

raw_drive_logs = dg.AssetSpec(
    "raw_drive_logs",
    group_name="ingest",
    description="Drive logs (MCAP) and their manifests as the fleet uploads them to "
    "raw/date=<upload day>/vehicle=<id>/ in the lake. Written by vehicles, never by Dagster.",
    kinds={"s3", "mcap"},
)

_DRIVE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("vehicle", "string"),
        dg.TableColumn("drive", "string"),
        dg.TableColumn("status", "string", description="ingested, recovered or quarantined"),
        dg.TableColumn("reasons", "string"),
        dg.TableColumn("minutes", "float"),
        dg.TableColumn("megabytes", "float"),
        dg.TableColumn("new", "bool", description="decoded in this run (else already done)"),
    ]
)


def _metadata(report: HourReport) -> dict[str, dg.MetadataValue]:
    s = report.summary()
    rows = [
        dg.TableRecord(
            {
                "vehicle": d.get("vehicle") or "?",
                "drive": d.get("drive") or "?",
                "status": d["status"],
                "reasons": "; ".join(f"{r['code']}: {r['detail']}" for r in d.get("reasons", [])),
                "minutes": round(d.get("duration_s", 0.0) / 60, 2),
                "megabytes": round(d.get("bytes", 0) / 1e6, 2),
                "new": not d.get("skipped", False),
            }
        )
        for d in report.drives
    ]
    return {
        "drives": dg.MetadataValue.int(s["drives"]),
        "usable_drives": dg.MetadataValue.int(s["usable"]),
        "quarantined": dg.MetadataValue.int(s["quarantined"]),
        "recovered": dg.MetadataValue.int(s["recovered"]),
        "newly_decoded": dg.MetadataValue.int(s["newly_processed"]),
        "hours_of_driving": dg.MetadataValue.float(s["hours_of_driving"]),
        "megabytes": dg.MetadataValue.float(round(s["bytes"] / 1e6, 3)),
        "per_drive": dg.MetadataValue.table(rows, schema=_DRIVE_COLUMNS),
    }


def _log(context: dg.OpExecutionContext) -> Callable[[dict], None]:
    def log(d: dict) -> None:
        reasons = ", ".join(r["code"] for r in d.get("reasons", []))
        context.log.info(
            f"{d.get('vehicle')}/{d.get('drive')}: {d['status']}"
            + (" (already done)" if d.get("skipped") else "")
            + (f" [{reasons}]" if reasons else "")
        )

    return log


@dg.op(
    ins={"raw_drive_logs": dg.In(dg.Nothing)},
    out=dg.DynamicOut(),
    tags={"dataloop/stage": "ingest"},
)
def plan_ingest_shards(context: dg.OpExecutionContext, lake: LakeResource):
    """The hour's committed uploads, in ``hour_shards()`` shards by vehicle."""
    rules_or_fail(installed())  # broken adapters fail the run, and quarantine no drive
    manifests = list(manifests_in_hour(lake.store(), context.partition_key))
    shards = shard_uploads(manifests, hour_shards())
    context.log.info(f"{len(manifests)} upload(s) in {len(shards)} shard(s)")
    for k, part in enumerate(shards):
        yield dg.DynamicOutput(part, mapping_key=f"shard_{k}")


@dg.op(pool="decode", tags={"dataloop/stage": "ingest"})  # dataloop/infra/pools.py
def ingest_shard(context: dg.OpExecutionContext, lake: LakeResource, uploads: list) -> dict:
    """One shard's uploads decoded (in this worker's processes): records and failures."""
    drives, failures = ingest_uploads(lake.store(), context.partition_key, uploads, _log(context))
    return {"drives": drives, "failures": failures}


@dg.op(tags={"dataloop/stage": "ingest"})
def record_ingest_hour(context: dg.OpExecutionContext, lake: LakeResource, shards: list):
    """The hour indexed and summarised from every shard's records."""
    report = record_hour(
        lake.store(),
        context.partition_key,
        [d for s in shards for d in s["drives"]],
        [f for s in shards for f in s["failures"]],
    )
    return dg.Output(
        None, data_version=dg.DataVersion(report.data_version), metadata=_metadata(report)
    )


@dg.graph_multi_asset(
    outs={
        "decoded_drives": dg.AssetOut(
            dagster_type=dg.Nothing,
            description="Every drive that arrived in this hour, decoded into Parquet tables in "
            "the lake (frames index, vehicle state, IMU, GNSS, objects, events). Drives "
            "already decoded at this version are skipped; undecodable ones are quarantined "
            "with a reason and the hour proceeds. The hour fans out by vehicle into "
            "`DATALOOP_HOUR_SHARDS` steps (one where the run's machine does the work).",
            # An adapter edit marks every hour stale; a backfill re-decodes with the new ones.
            code_version=installed().version(
                lambda a: (
                    f"decoder-{DECODER_VERSION}.adapters-{a.digest}.contract-{CONTRACT_VERSION}"
                )
            ),
            kinds={"python", "parquet"},
            tags={"dataloop/stage": "ingest"},
        )
    },
    ins={"raw_drive_logs": dg.AssetIn(dagster_type=dg.Nothing)},
    partitions_def=arrival_hours,
    group_name="ingest",
)
def decoded_drives(raw_drive_logs):
    shards = plan_ingest_shards(raw_drive_logs).map(ingest_shard)
    return record_ingest_hour(shards.collect())


# The fleet uploads around the clock: six hours without a decoded hour is worth a look. (A
# graph-backed asset takes its freshness policy here; AssetOut's is not carried over.)
decoded_drives = decoded_drives.map_asset_specs(
    lambda spec: spec.replace_attributes(
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(days=2), warn_window=timedelta(hours=6)
        )
    )
)


ingest_job = dg.define_asset_job(
    "ingest_job",
    # The arrival hour's whole path: decode, check, approve (the blocking check gates it).
    selection=dg.AssetSelection.assets(decoded_drives).downstream()
    & dg.AssetSelection.groups("ingest", "quality", "labeling"),
    tags={"dataloop/stage": "ingest"},
    # In process by default (a process per step costs ~2.8 s here); DATALOOP_EXECUTOR switches.
    executor_def=stage_executor(),
    # Run events are stored for the UI whatever this says; it only quiets the console.
    config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    description="Decode, check and approve the drives that arrived in one hour.",
)
