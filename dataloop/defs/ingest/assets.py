"""Ingest: raw drive logs -> decoded lake tables, per arrival hour."""

from datetime import timedelta

import dagster as dg

from dataloop.defs.ingest.partitions import arrival_hours
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.fleet.contract import CONTRACT_VERSION
from dataloop.infra.executors import stage_executor
from dataloop.ingest.adapters import installed
from dataloop.ingest.decode import DECODER_VERSION
from dataloop.ingest.hour import HourReport, ingest_hour

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


@dg.asset(
    partitions_def=arrival_hours,
    deps=[raw_drive_logs],
    group_name="ingest",
    # An adapter edit marks every hour stale; a backfill re-decodes with the new adapters.
    code_version=installed().version(
        lambda a: f"decoder-{DECODER_VERSION}.adapters-{a.digest}.contract-{CONTRACT_VERSION}"
    ),
    kinds={"python", "parquet"},
    tags={"dataloop/stage": "ingest"},
    pool="decode",  # dataloop/infra/pools.py: limits across all runs
    # The fleet uploads around the clock: six hours without a decoded hour is worth a look.
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=2), warn_window=timedelta(hours=6)
    ),
)
def decoded_drives(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every drive that arrived in this hour, decoded into Parquet tables in the lake (frames
    index, vehicle state, IMU, GNSS, objects, events). Drives already decoded at this version
    are skipped; undecodable ones are quarantined with a reason and the hour proceeds."""

    def log(d: dict) -> None:
        reasons = ", ".join(r["code"] for r in d.get("reasons", []))
        context.log.info(
            f"{d.get('vehicle')}/{d.get('drive')}: {d['status']}"
            + (" (already done)" if d.get("skipped") else "")
            + (f" [{reasons}]" if reasons else "")
        )

    rules_or_fail(installed())  # broken adapters fail the run, and quarantine no drive
    report = ingest_hour(lake.store(), context.partition_key, on_drive=log)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(report.data_version), metadata=_metadata(report)
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
