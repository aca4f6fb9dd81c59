"""Curation on fleet-simulator drives: the scenario library finds what the simulator
witnessed; datasets are versioned, balanced and split without leaks; lineage runs both ways
and agrees with Dagster; a deletion request removes exactly the subject's data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataloop.curation import datasets as D
from dataloop.curation.scenarios import read_scenario_index
from dataloop.fleet.simulator.config import SimConfig
from dataloop.ingest.tables import read_table
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.dryrun import DryRunStore
from dataloop.lake.pointers import read_json
from dataloop.lineage import graph
from dataloop.lineage.forget import Subject, forget, scrub
from tests.helpers import curate, simulated_lake
from tests.scenario_truth import score, truth_events

SCENARIOS = (
    "cut_in",
    "hard_brake",
    "near_miss",
    "disengagement",
    "pedestrian_crossing",
    "stalled_vehicle",
    "lane_change",
    "weather",
)


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    # Straight roads: the queries have no map, so they read motion in the ego frame
    # (docs/curation.md gives their lower recall at junctions). Corner cases at several times the
    # fleet's rate, so that every scenario occurs a few dozen times in 24 minutes of driving.
    config = replace(
        SimConfig().without_faults(),
        roads={"highway": 0.7, "merge": 0.3},
        camera_size=(160, 96),
        conditions={"day": 2.0, "night": 1.0, "rain": 1.0, "flooded": 1.0},
        corner_cases_per_hour={
            "cut_in": 120.0,
            "hard_brake": 90.0,
            "stalled_vehicle": 60.0,
            "pedestrian_crossing": 60.0,
        },
    )
    store, reports, instance, hours = simulated_lake(root, config, vehicles=8, minutes=3.0, seed=21)
    days = sorted({h[:10] for h in hours})
    result = curate(store, instance, days)
    return store, reports, instance, days, result


def test_each_scenario_finds_what_the_simulator_witnessed(curated):
    store, reports, _, days, _ = curated
    present = {
        (s.vehicle, s.drive) for day in days for s in ledger.drives_of_day(store, day) if s.version
    }
    events = [e for e in truth_events(reports) if (e["vehicle_id"], e["drive_id"]) in present]
    clips = read_scenario_index(store)
    for scenario in SCENARIOS:
        r = score(clips, events, scenario)
        assert r["events"] > 0, f"the fleet produced no {scenario}"
        assert r["recall"] >= 0.9, r
        assert r["precision"] >= 0.8, r


def test_clips_carry_drive_span_tags_and_severity(curated):
    store, *_ = curated
    clips = read_scenario_index(store).to_pylist()
    assert clips
    for c in clips:
        assert c["start_t"] < c["end_t"]
        assert 0.0 <= c["severity"] <= 1.0
        assert c["tags"] and c["drive_version"]
    assert len({c["clip_id"] for c in clips}) == len(clips)


def test_no_drive_or_vehicle_leaks_across_splits(curated):
    store, *_ = curated
    record = read_json(store, L.dataset_latest_key("training"))
    manifest = D.read_manifest(store, D.find_version(store, record["version"]))
    splits: dict = {}
    for row in manifest.select(["vehicle_id", "drive_id", "split"]).to_pylist():
        splits.setdefault((row["vehicle_id"], row["drive_id"]), set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {s for v in splits.values() for s in v} >= {"train"}

    by_vehicle = D.Policy(
        {**D.load_policy().raw, "split": {**D.load_policy().raw["split"], "by": "vehicle"}}
    )
    table, _ = D.curate(read_scenario_index(store), by_vehicle)
    vehicles: dict = {}
    for row in table.select(["vehicle_id", "split"]).to_pylist():
        vehicles.setdefault(row["vehicle_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in vehicles.values())


def test_policy_balances_categories_and_drops_near_duplicates(curated):
    store, *_ = curated
    policy = D.load_policy()
    manifest, report = D.curate(read_scenario_index(store), policy)
    weights = {}
    for row in manifest.select(["scenario", "weight"]).to_pylist():
        weights[row["scenario"]] = weights.get(row["scenario"], 0.0) + row["weight"]
    total = sum(weights.values())
    covered = {s: policy.mix[s] for s in weights}
    for s, w in weights.items():  # each category counts for its share of the mix
        assert w / total == pytest.approx(covered[s] / sum(covered.values()), rel=1e-3)
    rows = manifest.to_pylist()
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if (a["vehicle_id"], a["drive_id"], a["scenario"]) == (
                b["vehicle_id"],
                b["drive_id"],
                b["scenario"],
            ):
                assert D._gap_s(a, b) > policy.raw["near_duplicate_gap_s"]
    assert sum(report["after_dedup"].values()) <= sum(report["found"].values())


def test_dataset_versions_are_immutable_numbered_and_match_dagster(curated, monkeypatch, tmp_path):
    store, _, instance, days, result = curated
    first = read_json(store, L.dataset_latest_key("training"))
    event = result.get_asset_materialization_events()[0]
    assert event.materialization.tags["dagster/data_version"] == first["version"]
    assert event.materialization.metadata["seq"].value == first["seq"]
    record = D.find_version(store, first["version"])
    assert record["dagster_run_id"] == result.run_id
    manifest_bytes = store.get(record["manifest_key"])
    assert hashlib.sha256(manifest_bytes).hexdigest()[:32] == first["version"]

    again = curate(store, instance, days)  # nothing changed: the same version
    assert read_json(store, L.dataset_latest_key("training")) == first
    assert (
        again.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]
        == first["version"]
    )

    smaller = D.Policy({**D.load_policy().raw, "max_clips_per_category": 2})
    table, report = D.curate(read_scenario_index(store), smaller)
    second = D.publish(store, "training", table, {"report": report})
    assert second["seq"] == first["seq"] + 1 and second["version"] != first["version"]
    assert second["parent"] == first["version"]
    assert store.get(record["manifest_key"]) == manifest_bytes  # the old one is untouched


def test_only_approved_and_anonymised_drive_versions_enter(curated):
    store, *_ = curated
    clips = read_scenario_index(store)
    kept, dropped = D.eligible(store, clips)
    assert dropped == 0 and kept.num_rows == clips.num_rows
    stale = clips.set_column(
        clips.schema.get_field_index("drive_version"),
        "drive_version",
        pc.if_else(
            pc.equal(clips["vehicle_id"], clips["vehicle_id"][0]), "0" * 16, clips["drive_version"]
        ),
    )
    kept, dropped = D.eligible(store, stale)
    assert dropped > 0
    assert clips["vehicle_id"][0].as_py() not in kept["vehicle_id"].to_pylist()


def test_lineage_round_trip(curated):
    store, *_ = curated
    dataset = read_json(store, L.dataset_latest_key("training"))
    graph.record_node(
        store, "model", "m-test-1", [{"kind": "dataset", "version": dataset["version"]}]
    )
    graph.record_node(store, "release", "r-test-1", [{"kind": "model", "version": "m-test-1"}])
    back = graph.backward(store, "release", "r-test-1")
    assert [n["kind"] for n in back["chain"]] == ["release", "model"]
    assert [d["version"] for d in back["datasets"]] == [dataset["version"]]
    manifest = D.read_manifest(store, D.find_version(store, dataset["version"]))
    drives = {(r["vehicle_id"], r["drive_id"], r["drive_version"]) for r in manifest.to_pylist()}
    assert {(d["vehicle"], d["drive"], d["drive_version"]) for d in back["drives"]} == drives
    for vehicle, drive, _ in sorted(drives)[:3]:
        fwd = graph.forward(store, vehicle, drive)
        assert dataset["version"] in [d["version"] for d in fwd["datasets"]]
        assert fwd["models"] == [{"kind": "model", "version": "m-test-1"}]
        assert fwd["releases"] == [{"kind": "release", "version": "r-test-1"}]
    assert graph.forward(store, "veh-nobody")["datasets"] == []


def _snapshot(store) -> dict[str, bytes]:
    return {i.key: store.get(i.key) for i in store.list("")}


def test_forget_a_drive_removes_exactly_its_data(curated):
    store, *_ = curated
    dataset = read_json(store, L.dataset_latest_key("training"))
    manifest = D.read_manifest(store, D.find_version(store, dataset["version"]))
    vehicle, drive = manifest["vehicle_id"][0].as_py(), manifest["drive_id"][0].as_py()
    subject = Subject(vehicle, drive)
    model = [{"kind": "dataset", "version": dataset["version"]}]
    graph.record_node(store, "model", "m-test-1", model)  # idempotent
    before = _snapshot(store)
    dry = DryRunStore(store)  # what `dataloop forget --dry-run` shows: it changes nothing
    plan = forget(dry, drive=drive, vehicle=vehicle, requested_by="test")
    assert _snapshot(store) == before
    audit = forget(store, drive=drive, vehicle=vehicle, requested_by="test")
    after = _snapshot(store)

    deleted = set(before) - set(after)
    assert dry.deleted == deleted and plan["deleted_objects"] == audit["deleted_objects"]
    assert plan["rewritten_indexes"] == audit["rewritten_indexes"]
    assert [d["superseded"] for d in plan["datasets"]] == [
        d["superseded"] for d in audit["datasets"]
    ]
    owned = {k for k in before if subject.owns(k)}
    assert owned and owned <= deleted
    assert any(k.startswith("raw/") for k in owned) and any(k.startswith("tables/") for k in owned)
    assert any(k.startswith("derived/frames/") for k in owned)
    for key in deleted - owned:  # day indexes rewritten without the drive's rows
        assert key.startswith(("curation/scenarios/", "search/embeddings/"))
    changed = {k for k in set(before) & set(after) if before[k] != after[k]}
    assert changed == set(audit["rewritten_indexes"]) | {L.dataset_latest_key("training")}
    for key in changed - {L.dataset_latest_key("training")}:
        old, new = json.loads(before[key]), json.loads(after[key])
        if "clips_key" not in old:  # a JSON index: the old one less the drive's entries
            assert new == scrub(old, subject, f"vehicle={vehicle}" in key.split("/"))
    added = set(after) - set(before)
    assert all(
        k.startswith(("datasets/training/", "audit/forget/", "curation/scenarios/")) for k in added
    )

    successor = read_json(store, L.dataset_latest_key("training"))
    assert successor["seq"] == dataset["seq"] + 1
    new_manifest = D.read_manifest(store, D.find_version(store, successor["version"]))
    assert (vehicle, drive) not in set(
        zip(
            new_manifest["vehicle_id"].to_pylist(),
            new_manifest["drive_id"].to_pylist(),
            strict=True,
        )
    )
    assert new_manifest.num_rows == manifest.num_rows - sum(
        1
        for v, d in zip(
            manifest["vehicle_id"].to_pylist(), manifest["drive_id"].to_pylist(), strict=True
        )
        if (v, d) == (vehicle, drive)
    )
    superseded = read_json(store, L.dataset_superseded_key("training", dataset["version"]))
    assert superseded["superseded_by"] == successor["version"]
    assert [m["version"] for m in audit["affected_models"]] == ["m-test-1"]
    assert json.loads(after[audit["audit_key"]])["request"] == {"vehicle": vehicle, "drive": drive}
    # outside immutable history, the drive is named nowhere any more
    for key, data in after.items():
        if not key.startswith(("datasets/", "lineage/", "audit/")) and key.endswith(".json"):
            assert scrub(json.loads(data), subject) == json.loads(data), key
    left = read_scenario_index(store).to_pylist()
    assert (vehicle, drive) not in {(c["vehicle_id"], c["drive_id"]) for c in left}


def test_a_label_review_is_a_new_drive_version_in_lineage(curated):
    from dataloop.curation.scenarios import load_scenarios, mine_day
    from dataloop.labeling.review import import_reviewed

    store, _, _, days, _ = curated
    clips = read_scenario_index(store)
    vehicle, drive = clips["vehicle_id"][-1].as_py(), clips["drive_id"][-1].as_py()
    before = ledger.drive(store, vehicle, drive).version
    labels = read_table(store, ledger.section(store, vehicle, drive, ledger.LABELS)["labels"])
    track = labels["track_id"][0].as_py()
    review = {
        "categories": [{"id": 1, "name": "truck"}],
        "annotations": [
            {
                "category_id": 1,
                "attributes": {"vehicle": vehicle, "drive": drive, "track_id": track},
            }
        ],
    }
    assert import_reviewed(store, review)
    after = ledger.drive(store, vehicle, drive).version
    assert after and after != before
    kept, dropped = D.eligible(store, clips)  # mined from the old labels: out until re-mined
    assert dropped and drive not in set(kept["drive_id"].to_pylist())
    for day in days:
        mine_day(store, day, load_scenarios())
    remined = read_scenario_index(store)
    mine = remined.filter(pc.equal(remined["drive_id"], drive))
    assert mine.num_rows and set(mine["drive_version"].to_pylist()) == {after}


def test_the_latest_training_dataset_and_its_held_out_clips(tmp_path):
    """One owner for the training dataset's pointer (named by the curation policy) and for
    the clips simulation holds out: val and test, by clip id; nothing before the first."""
    from dataloop.lake.local import LocalStore

    store = LocalStore(tmp_path / "lake")
    assert D.training_dataset_name() == D.load_policy().name
    assert D.latest_training_dataset(store) is None
    assert D.held_out_clips(store).num_rows == 0
    rows = [{"clip_id": c, "split": s} for c, s in (("c3", "test"), ("c1", "val"), ("c2", "train"))]
    manifest = pa.Table.from_pylist(rows, schema=D.MANIFEST_SCHEMA)
    D.publish(store, "other", manifest.slice(0, 1), {})  # another dataset: not training's
    assert D.latest_training_dataset(store) is None
    record = D.publish(store, D.training_dataset_name(), manifest, {})
    assert D.latest_training_dataset(store) == {"seq": record["seq"], "version": record["version"]}
    held = D.held_out_clips(store)
    assert held["clip_id"].to_pylist() == ["c1", "c3"]
    assert held["split"].to_pylist() == ["val", "test"]
