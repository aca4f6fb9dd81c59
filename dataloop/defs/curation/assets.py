"""Curation: the daily scenario index and search index, and the versioned training dataset."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from dataloop.curation import datasets as D
from dataloop.curation.scenarios import library_version, load_scenarios, mine_day
from dataloop.defs.curation.automation import (
    dataset_inputs_updated,
    lookback_days,
    recent_day_updated,
)
from dataloop.defs.curation.partitions import arrival_days
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.defs.set_aside import set_aside_metadata
from dataloop.lake import layout as L
from dataloop.lake.engines import engine_name
from dataloop.lake.pointers import read_json
from dataloop.rules import snapshot
from dataloop.search.index import index_code_version

SCENARIOS = load_scenarios()
POLICY = snapshot(D.policy_file(), D.load_policy)
"""The curation policy as this code location read it (validated on first use)."""
POLICY_VERSION = POLICY.version(lambda p: p.version)
RECENT_DAY_UPDATED = recent_day_updated(lookback_days())
"""When a day is mined again: its drives or labels changed, within the lookback."""


def _table(rows: list[dict], columns: dict[str, str]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        [dg.TableRecord({c: r.get(c) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in columns.items()]),
    )


def _on_spark(
    context: dg.AssetExecutionContext,
    client: dg.PipesSubprocessClient,
    name: str,
    extras: dict,
) -> dict:
    """Run ``dataloop/curation/spark_app.py`` with spark-submit through Pipes (its task and
    arguments in ``extras``); the metadata it reported, as plain values."""
    from dataloop.curation import spark_app
    from dataloop.lake.spark import submit_command

    command, env = submit_command(Path(spark_app.__file__), name)
    invocation = client.run(command=command, context=context, env=env, extras=extras)
    metadata = invocation.get_materialize_result().metadata or {}
    return {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}


@dg.asset(
    partitions_def=arrival_days,
    # by key: a module of another stage may be reloaded (tests re-read rule files)
    deps=["compliant_drives", "offboard_labels"],
    group_name="curation",
    # Editing a query of assets/scenarios/ marks every mined day stale: backfill to re-mine.
    code_version=f"scenarios-1.library-{library_version(SCENARIOS)}",
    kinds={"duckdb", "spark", "parquet"},
    tags={"dataloop/stage": "curation"},
    pool="duckdb",
    automation_condition=RECENT_DAY_UPDATED,
)
def scenario_index(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """Every clip the scenario library finds in the day's approved, anonymised drives:
    drive, start, end, tags, severity (offboard labels where a drive has them). Mined by
    DuckDB in this step, or by a Spark application launched through Pipes
    (``DATALOOP_TABLE_ENGINE=spark``)."""
    day, spark = context.partition_key, {}
    if engine_name() == "spark":
        extras = {"task": "mine", "lake": lake.url, "day": day}
        spark = _on_spark(context, pipes_subprocess_client, f"dataloop-mine-{day}", extras)
        record = read_json(lake.store(), L.day_index_key(day))
    else:
        record = mine_day(lake.store(), day, SCENARIOS, "duckdb")
    rows = [{"scenario": s, "clips": n} for s, n in sorted(record["per_scenario"].items())]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(L.key_digest(record["clips_key"])),
        metadata={
            "clips": dg.MetadataValue.int(record["clips"]),
            "drives": dg.MetadataValue.int(record["drives"]),
            **set_aside_metadata(map(tuple, record["set_aside"])),
            "per_scenario": _table(rows, {"scenario": "string", "clips": "int"}),
            "index": dg.MetadataValue.path(record["clips_key"]),
            "engine": dg.MetadataValue.text(record["engine"]),
            **spark,
        },
    )


@dg.asset(
    partitions_def=arrival_days,
    deps=[scenario_index],
    group_name="curation",
    # The describer's, the index's and the image encoder's versions ($DATALOOP_IMAGE_ENCODER).
    code_version=index_code_version(),
    kinds={"pytorch", "faiss", "parquet"},
    tags={"dataloop/stage": "curation"},
    automation_condition=RECENT_DAY_UPDATED,  # in the run that mines the day
)
def clip_embeddings(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The day's search index: a MiniLM embedding of every clip's scene description and an
    image embedding of its keyframe and of sampled frames of every compliant drive."""
    from dataloop.search.index import build_day_index

    record = build_day_index(lake.store(), context.partition_key)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(record["sha256"][:32]),
        metadata={
            "clips": dg.MetadataValue.int(record["clips"]),
            "frames": dg.MetadataValue.int(record["frames"]),
            "drives": dg.MetadataValue.int(record["drives"]),
            **set_aside_metadata(map(tuple, record.get("set_aside", []))),
            "clips_not_compliant": dg.MetadataValue.int(record["clips_not_compliant"]),
            "image_encoder": dg.MetadataValue.text(record["image_encoder"]),
            "encoded": dg.MetadataValue.json(record["encoded"]),
            "reused": dg.MetadataValue.bool(record["skipped"]),
        },
    )


@dg.asset(
    deps=[scenario_index],
    group_name="curation",
    code_version=POLICY.version(lambda p: f"dataset-1.policy-{p.version}"),
    kinds={"duckdb", "spark", "parquet"},
    tags={"dataloop/stage": "curation"},
    automation_condition=dataset_inputs_updated,
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=3), warn_window=timedelta(days=1)
    ),
)
def training_dataset(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """The training dataset, versioned: the curation policy (assets/curation/training.yaml)
    over every mined day, written as an immutable manifest. The data version is the
    manifest's content hash; ``seq`` numbers the versions."""
    policy = rules_or_fail(POLICY)
    store = lake.store()
    if engine_name() == "spark":
        extras = {"task": "dataset", "lake": lake.url, "policy": policy.raw}
        spark = _on_spark(context, pipes_subprocess_client, "dataloop-dataset", extras)
        report = spark.pop("report")
        record = read_json(store, L.dataset_version_key(policy.name, spark.pop("seq")))
    else:
        spark = {}
        record, report = D.build_dataset(store, policy, "duckdb", context.run.run_id)
    mix = [
        {
            "scenario": s,
            "found": report["found"][s],
            "after_dedup": report["after_dedup"][s],
            "kept": report["kept"][s],
            "share": policy.mix[s],
        }
        for s in policy.mix
    ]
    md = (
        f"**{record['name']}:{record['seq']}** `{record['version']}` — {record['clips']} clips "
        f"from {report['drives']} drives; splits "
        + ", ".join(f"{k} {v}" for k, v in report["splits"].items())
        + (f"; uncovered: {', '.join(report['uncovered'])}" if report["uncovered"] else "")
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(record["version"]),
        metadata={
            "seq": dg.MetadataValue.int(record["seq"]),
            "summary": dg.MetadataValue.md(md),
            "manifest": dg.MetadataValue.path(record["manifest_key"]),
            "clips": dg.MetadataValue.int(record["clips"]),
            "not_eligible": dg.MetadataValue.int(report["not_eligible"]),
            "mix": _table(
                mix,
                {
                    "scenario": "string",
                    "found": "int",
                    "after_dedup": "int",
                    "kept": "int",
                    "share": "float",
                },
            ),
            "splits": dg.MetadataValue.json(report["splits"]),
            "inputs": dg.MetadataValue.text(report["inputs"]),
            "engine": dg.MetadataValue.text(engine_name()),
            **spark,
        },
    )
