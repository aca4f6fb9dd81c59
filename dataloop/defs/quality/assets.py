"""Quality: per-drive verdicts for every arrival hour, a blocking check on the hour as a whole,
and the hour's approved drives that every later stage reads."""

import dagster as dg

from dataloop.defs.ingest.assets import decoded_drives
from dataloop.defs.ingest.partitions import arrival_hours
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.lake.hashing import sha256_json
from dataloop.lake.layout import hour_verdicts_key
from dataloop.lake.pointers import read_json
from dataloop.quality.approved import approve_hour
from dataloop.quality.hour import HourQuality, check_hour
from dataloop.quality.suites import suites_snapshot
from dataloop.quality.verdicts import PASS, QUARANTINE, WARN

RUNNER_VERSION = "1"
SUITES = suites_snapshot()
"""The suites as this code location read them (validated on first use: a broken suite fails
the verdicts, not the code location)."""

_VERDICT_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("vehicle", "string"),
        dg.TableColumn("drive", "string"),
        dg.TableColumn("verdict", "string", description="pass, warn or quarantine"),
        dg.TableColumn("failing", "string", description="expectation (unexpected / rows)"),
    ]
)


def _metadata(q: HourQuality) -> dict[str, dg.MetadataValue]:
    rows = [
        dg.TableRecord(
            {
                "vehicle": d["vehicle"] or "?",
                "drive": d["drive"] or "?",
                "verdict": d["verdict"],
                "failing": "; ".join(
                    f"{f['expectation']} ({f['unexpected']}/{f['total']})" for f in d["failures"]
                ),
            }
        )
        for d in q.drives
    ]
    summary = (
        f"**{'fit' if q.fit else 'UNFIT'}** — {len(q.drives)} drives: "
        f"{q.count(PASS)} pass, {q.count(WARN)} warn, {q.count(QUARANTINE)} quarantined"
        + "".join(f"\n- {r}" for r in q.reasons)
    )
    return {
        "summary": dg.MetadataValue.md(summary),
        "pass": dg.MetadataValue.int(q.count(PASS)),
        "warn": dg.MetadataValue.int(q.count(WARN)),
        "quarantined": dg.MetadataValue.int(q.count(QUARANTINE)),
        "suites_version": dg.MetadataValue.text(q.suites_version),
        "verdicts": dg.MetadataValue.table(rows, schema=_VERDICT_COLUMNS),
    }


@dg.asset(
    partitions_def=arrival_hours,
    deps=[decoded_drives],
    group_name="quality",
    # The suites' hash: editing a rule marks every checked hour stale; a backfill re-applies.
    code_version=SUITES.version(lambda s: f"quality-{RUNNER_VERSION}.suites-{s.version}"),
    kinds={"python", "duckdb"},
    tags={"dataloop/stage": "quality"},
    pool="quality",
)
def drive_verdicts(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every drive of the hour checked against the quality suites (assets/quality): a verdict
    per drive (pass, warn, quarantine) with its failing expectations and counts."""
    quality = check_hour(lake.store(), context.partition_key, rules_or_fail(SUITES))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(quality.data_version), metadata=_metadata(quality)
    )


@dg.asset_check(
    asset=drive_verdicts,
    blocking=True,
    partitions_def=arrival_hours,
    description="The hour as a whole is fit for use: quarantine rate within policy, no schema "
    "drift, at least one usable drive. A failure stops the hour's downstream assets.",
)
def hour_fit_for_use(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    hour = context.partition_key
    record = read_json(lake.store(), hour_verdicts_key(hour)) or {
        "fit": False,
        "reasons": ["no verdicts recorded for this hour"],
    }
    return dg.AssetCheckResult(
        passed=bool(record["fit"]),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"reasons": dg.MetadataValue.json(record.get("reasons", []))},
    )


@dg.asset(
    partitions_def=arrival_hours,
    deps=[drive_verdicts],
    group_name="quality",
    kinds={"python"},
    tags={"dataloop/stage": "quality"},
)
def approved_drives(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The hour's drives that passed or only warned: the one list later stages read."""
    drives = approve_hour(lake.store(), context.partition_key)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_json(drives)[:32]),
        metadata={"drives": dg.MetadataValue.int(len(drives))},
    )
