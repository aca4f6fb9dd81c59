"""Scenario mining and the dataset build on Spark (``DATALOOP_TABLE_ENGINE=spark``): the same
SQL files, translated, on a real standalone cluster of two workers, find exactly the clips
DuckDB finds, and the same policy builds the same manifest, byte for byte.

The lake is a fleet-simulator fleet of its own (seed 33, used by no other test), with every
corner case frequent enough that each scenario of the library has hits to compare."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import pyarrow as pa
import pytest

from dataloop.curation import datasets as D
from dataloop.curation.scenarios import (
    load_scenarios,
    minable,
    mine,
    mine_day,
    open_views,
    read_scenario_index,
)
from dataloop.fleet.simulator.config import SimConfig
from dataloop.ingest.tables import to_parquet
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.engines import engine_name
from dataloop.lake.pointers import read_json
from dataloop.lake.spark_sql import UntranslatableSQL, to_spark
from tests.helpers import hourly_assets, pipes_client, simulated_lake
from tests.spark import spark_cluster  # noqa: F401 - the session fixture

SCENARIOS = {s.name for s in load_scenarios()}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    config = replace(
        SimConfig().without_faults(),
        roads={"highway": 0.7, "merge": 0.3},
        camera_size=(160, 96),
        conditions={"day": 2.0, "night": 1.0, "rain": 1.0},
        corner_cases_per_hour={
            "cut_in": 150.0,
            "hard_brake": 120.0,
            "stalled_vehicle": 90.0,
            "pedestrian_crossing": 90.0,
        },
    )
    root = tmp_path_factory.mktemp("spark")
    store, _, instance, hours = simulated_lake(root, config, vehicles=4, minutes=2.5, seed=33)
    return store, instance, sorted({h[:10] for h in hours})


@pytest.fixture
def on_cluster(spark_cluster, monkeypatch):  # noqa: F811 - the fixture imported above
    from dataloop.lake import spark

    monkeypatch.setenv("DATALOOP_SPARK_MASTER", spark_cluster.master)
    spark.session.cache_clear()
    yield spark_cluster
    spark.session().stop()
    spark.session.cache_clear()


def _compare(clips: pa.Table) -> list[tuple]:
    return sorted(
        (c["clip_id"], c["scenario"], c["start_t"], c["end_t"], c["severity"], tuple(c["tags"]))
        for c in clips.to_pylist()
    )


def test_spark_mines_the_clips_duckdb_mines_on_two_workers(fleet, on_cluster):
    from dataloop.lake import spark

    store, _, days = fleet
    scenarios = load_scenarios()
    for day in days:
        drives, _ = minable(ledger.drives_of_day(store, day))
        duck, duck_counts = mine(open_views(store, drives, "duckdb"), scenarios, day)
        on_spark, counts = mine(open_views(store, drives, "spark"), scenarios, day)
        assert counts == duck_counts
        assert _compare(on_spark) == _compare(duck)
    # every query of the library had something to agree on (over the fleet's days)
    assert {s for s, n in duck_counts.items() if n} == SCENARIOS, duck_counts
    app = spark.session().sparkContext.applicationId
    assert all(n >= 1 for n in on_cluster.executors_of(app)), on_cluster.executors_of(app)


def test_the_scenario_index_asset_runs_on_the_engine_the_switch_names(
    fleet, on_cluster, monkeypatch
):
    from dataloop.defs.curation.assets import scenario_index
    from dataloop.defs.resources import LakeResource

    store, instance, days = fleet
    resources = {"lake": LakeResource(url=str(store.root)), **pipes_client()}
    records, metadata = {}, {}
    for engine in ("duckdb", "spark"):
        monkeypatch.setenv("DATALOOP_TABLE_ENGINE", engine)
        result = dg.materialize(
            [*hourly_assets(), scenario_index],
            partition_key=days[-1],
            instance=instance,
            resources=resources,
            selection=[scenario_index],
        )
        assert result.success
        records[engine] = read_json(store, L.day_index_key(days[-1])) or {}
        (event,) = result.asset_materializations_for_node("scenario_index")
        metadata[engine] = {k: v.value for k, v in event.metadata.items()}
    assert records["spark"]["engine"] == "spark" and records["duckdb"]["engine"] == "duckdb"
    # spark-submit ran the application on the cluster and reported it back over Pipes
    assert metadata["spark"]["spark_master"] == on_cluster.master
    assert metadata["spark"]["spark_application"].startswith("app-")
    assert "spark_application" not in metadata["duckdb"]
    assert metadata["spark"]["clips"] == metadata["duckdb"]["clips"] > 0
    # the same clips, so the same immutable clip table
    assert records["spark"]["clips_key"] == records["duckdb"]["clips_key"]


@pytest.fixture(scope="module")
def mined(fleet):
    """The fleet with every day mined (DuckDB): the scenario index a dataset is built from."""
    store, instance, days = fleet
    for day in days:
        mine_day(store, day, load_scenarios(), "duckdb")
    return fleet


def test_spark_builds_the_dataset_duckdb_builds(mined, on_cluster):
    """Every step of the build has work: a severity floor, near-duplicates, a cap that few
    clips per category reach, splits by drive (a key the SQL concatenates)."""
    store, _, days = mined
    policy = D.Policy({**D.load_policy().raw, "max_clips_per_category": 5, "min_severity": 0.4})
    duck, duck_report = D.build(D.open_clips(store, days, "duckdb"), policy)
    on_spark, report = D.build(D.open_clips(store, days, "spark"), policy)
    assert report == duck_report
    assert to_parquet(on_spark)[1] == to_parquet(duck)[1]  # byte for byte: the same version
    # each step had work to do: clips under the floor, near-duplicates, the cap reached
    severities = read_scenario_index(store, days)["severity"].to_pylist()
    assert sum(report["found"].values()) == sum(s >= 0.4 for s in severities) < len(severities)
    assert sum(report["after_dedup"].values()) < sum(report["found"].values()), report
    assert max(report["kept"].values()) == policy.raw["max_clips_per_category"], report
    assert sum(report["kept"].values()) < sum(report["after_dedup"].values()), report
    assert duck.num_rows > 0


def test_the_dataset_asset_builds_on_the_engine_the_switch_names(mined, on_cluster, monkeypatch):
    from dataloop.defs.curation.assets import training_dataset
    from dataloop.defs.resources import LakeResource

    store, instance, _ = mined
    resources = {"lake": LakeResource(url=str(store.root)), **pipes_client()}
    metadata = {}
    for engine in ("spark", "duckdb"):
        monkeypatch.setenv("DATALOOP_TABLE_ENGINE", engine)
        result = dg.materialize([training_dataset], instance=instance, resources=resources)
        assert result.success
        (event,) = result.asset_materializations_for_node("training_dataset")
        metadata[engine] = {k: v.value for k, v in event.metadata.items()}
        metadata[engine]["version"] = event.tags["dagster/data_version"]
    assert metadata["spark"]["engine"] == "spark" and metadata["duckdb"]["engine"] == "duckdb"
    assert metadata["spark"]["spark_master"] == on_cluster.master
    # the same manifest: one version, published once (the second build finds it the latest)
    assert metadata["spark"]["version"] == metadata["duckdb"]["version"]
    assert metadata["spark"]["seq"] == metadata["duckdb"]["seq"]
    for key in ("clips", "not_eligible", "splits", "mix"):
        assert metadata["spark"][key] == metadata["duckdb"][key], key
    assert metadata["spark"]["clips"] > 0
    record = D.find_version(store, metadata["spark"]["version"])
    assert D.read_manifest(store, record).num_rows == metadata["spark"]["clips"]


def test_a_bad_engine_name_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("DATALOOP_TABLE_ENGINE", "trino")
    with pytest.raises(ValueError, match="expected one of duckdb, spark"):
        engine_name()


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT x FROM a ASOF JOIN b ON a.k = b.k AND a.t >= b.t", "qualify these columns"),
        ("SELECT a.x FROM a ASOF JOIN b ON a.k = b.k", "exactly one left.t"),
        ("SELECT a.x FROM a ASOF JOIN b ON a.k = b.k AND a.t > b.t", "only = and >="),
        ("SELECT a.x FROM a ASOF JOIN b ON a.t >= b.t JOIN c ON a.k = c.k", "mixes ASOF"),
    ],
)
def test_sql_spark_cannot_run_faithfully_is_refused_with_the_reason(sql, why):
    with pytest.raises(UntranslatableSQL, match=why):
        to_spark(sql)
