"""Training on fleet-simulator drives through the real pipeline: the trigger policy's
automation condition fires on its policy only, with the gate in the same run; a Pipes round
trip reports metrics; training reproduces; the model beats a constant control open loop; its
bundle drives a simulated vehicle."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from dataloop.curation import datasets as D
from dataloop.defs.resources import LakeResource
from dataloop.defs.simulation.assets import simulation_report
from dataloop.defs.training.assets import trained_model
from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.lake import layout as L
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.policy import bundle as B
from dataloop.training.config import model_config, trigger_policy
from dataloop.training.train import train
from dataloop.training.trigger import decide
from tests.helpers import curate, pipes_client, simulated_lake

EPOCHS = 8
TOLERANCE = 1e-6
DRIVEN_AT = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
"""The drives' fixed start. Drive ids are start times and the dataset splits by a hash of the
drive, so a start taken from the clock drew a new held-out set in every run: of 11 drives, the
held-out samples were under 100 in 1.8 % of 5,000 draws and none at all in 1.2 % (CI failed on
one with 26), and the open-loop test judged the draw, not the model. This start is the first
hour of its day whose draw holds out close to the policy's 30 % of the samples (29 %)."""


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    config = replace(
        SimConfig().without_faults(),
        roads={"highway": 0.7, "merge": 0.3},
        camera_size=(160, 96),
        corner_cases_per_hour={"cut_in": 120.0, "hard_brake": 90.0, "stalled_vehicle": 60.0},
    )
    store, _, instance, hours = simulated_lake(
        root, config, vehicles=4, minutes=2.0, seed=5, start=DRIVEN_AT
    )
    assert curate(store, instance, sorted({h[:10] for h in hours})).success
    return store, root, instance


def _evaluate(store, instance, cursor=None):
    """One evaluation of training's conditions, the lake named by the environment as the
    code location's: (the result, whether trained_model is requested, the policy's words)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATALOOP_LAKE", str(store.root))
        result = dg.evaluate_automation_conditions(
            defs=dg.Definitions(
                assets=[trained_model, simulation_report],
                resources={
                    "lake": LakeResource(url=str(store.root)),
                    **pipes_client(),
                },
            ),
            instance=instance,
            asset_selection=dg.AssetSelection.assets(trained_model, simulation_report),
            cursor=cursor,
        )
    model = next(r for r in result.results if r.key == trained_model.key)
    policy = model.serializable_evaluation.child_evaluations[-1].condition_snapshot
    assert policy.name == "training_policy"
    return result, result.get_num_requested(trained_model.key) == 1, policy.description


@pytest.fixture(scope="module")
def trained(curated):
    store, _, instance = curated
    _, requested, why = _evaluate(store, instance)
    assert requested, why  # a first dataset: train
    assert why.startswith("new_clips")
    # As an automation run: no trigger tag, the model's metadata records the policy's reasons.
    result = dg.materialize(
        [trained_model],
        instance=instance,
        resources={
            "lake": LakeResource(url=str(store.root)),
            **pipes_client(),
        },
        run_config={"ops": {"trained_model": {"config": {"epochs": EPOCHS}}}},
    )
    assert result.success
    return result


def test_trigger_holds_while_a_release_rolls_out(curated):
    """Before anything is trained the condition fires, except while a rollout is running;
    the gate is requested with the model (one run); a dataset is asked for once."""
    from dataloop.lake.layout import ROLLOUT_KEY
    from dataloop.lake.pointers import write_json

    store, _, instance = curated
    assert B.latest(store) is None  # first in the module: before `trained` trains
    write_json(store, ROLLOUT_KEY, {"release": 1, "status": "rolling"})
    held, requested, why = _evaluate(store, instance)
    assert not requested and held.total_requested == 0
    assert why.startswith("held:") and "rolling out" in why
    write_json(store, ROLLOUT_KEY, {"release": 1, "status": "complete"})
    fired, requested, why = _evaluate(store, instance, held.cursor)
    assert requested and why.startswith("new_clips")
    assert fired.get_num_requested(simulation_report.key) == 1
    again, requested, why = _evaluate(store, instance, fired.cursor)
    assert not requested and again.total_requested == 0  # the same dataset and reasons
    assert why.startswith("already requested: new_clips")
    store.delete(ROLLOUT_KEY)


def test_pipes_round_trip_reports_progress_metrics_and_bundle_version(curated, trained):
    store, *_ = curated
    mat = trained.asset_materializations_for_node("trained_model")[-1]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["epochs_reported"] == EPOCHS
    assert md["trigger"].startswith("new_clips")
    assert md["rmse_acceleration"] > 0 and md["train_samples"] > 0
    version = B.latest(store)["version"]
    assert mat.tags["dagster/data_version"] == version
    bundle = B.load_bundle(store, version)
    assert (
        bundle.card["dataset"]["version"]
        == read_json(store, L.dataset_latest_key("training"))["version"]
    )
    assert {"code_version", "seed", "metrics"} <= set(bundle.card)
    node = json.loads(store.get(L.node_key("model", version)))
    assert node["inputs"] == [{"kind": "dataset", "version": bundle.card["dataset"]["version"]}]


def test_trigger_does_not_fire_again_for_the_same_dataset(curated, trained):
    store, _, instance = curated
    result, requested, why = _evaluate(store, instance)
    assert not requested and result.total_requested == 0
    assert why == "the trigger policy does not ask"


def test_trigger_policy_thresholds(curated, trained, tmp_path):
    """New clips and category growth, against the dataset the current model was trained on."""
    store, *_ = curated
    manifest = D.read_manifest(store, D.find_version(store, B.latest(store)["dataset_version"]))
    lake = LocalStore(tmp_path / "lake")
    policy = {**trigger_policy(), "min_dataset_clips": 1, "category_growth_pct": 10_000}

    def model_on(table):
        old = D.publish(lake, "training", table, {})
        B.set_latest(lake, "m", {"dataset": {"version": old["version"], "seq": old["seq"]}})
        D.publish(lake, "training", manifest, {})

    n = policy["min_new_clips"] = manifest.num_rows // 4
    model_on(manifest.slice(n - 1))  # n - 1 clips are new
    assert decide(lake, policy)[1] == []
    model_on(manifest.slice(n))  # n new clips
    assert decide(lake, policy)[1][0].startswith(f"new_clips: +{n}")

    top = max(set(manifest["scenario"].to_pylist()), key=manifest["scenario"].to_pylist().count)
    rows = manifest.to_pylist()
    cat = [r for r in rows if r["scenario"] == top]
    policy = {**policy, "min_new_clips": 10**6, "category_growth_pct": 50, "min_category_clips": 1}
    keep = -(-3 * len(cat) // 4)  # growth from keep to all: at most a third
    import pyarrow as pa

    def without(k):
        drop = {r["clip_id"] for r in cat[k:]}
        return pa.Table.from_pylist(
            [r for r in rows if r["clip_id"] not in drop], schema=manifest.schema
        )

    model_on(without(keep))
    assert decide(lake, policy)[1] == []
    model_on(without(len(cat) // 2))
    assert decide(lake, policy)[1][0].startswith(f"category_growth: {top}")


def test_same_dataset_config_seed_same_metrics(curated, trained):
    store, *_ = curated
    first = B.load_bundle(store, B.latest(store)["version"])
    config = {**model_config(), "epochs": EPOCHS}
    again = train(store, first.card["dataset"]["version"], config)
    for k, v in first.card["metrics"].items():
        assert again["metrics"][k] == pytest.approx(v, rel=TOLERANCE, abs=TOLERANCE), k


def test_model_beats_constant_control_open_loop(curated, trained):
    store, *_ = curated
    m = B.load_bundle(store, B.latest(store)["version"]).card["metrics"]
    assert m["held_out_samples"] > 100
    # The model sees the current frame only (not its last controls: no copycat), so open
    # loop it cannot simply continue the logged control; it must still beat the constant on
    # acceleration. Held-out steering outside lane changes is the lane keeping of a driver who
    # wanders by milliradians: a constant is as good open loop, and must not be much better
    # (whether the model keeps its lane is the closed-loop gate's question).
    assert m["rmse_acceleration"] < m["baseline_rmse_acceleration"], m
    assert m["rmse_steering"] < 1.1 * m["baseline_rmse_steering"], m


def test_bundle_drives_a_simulated_vehicle(curated, trained, tmp_path):
    store, *_ = curated
    version = B.latest(store)["version"]
    reports = simulate_fleet(
        vehicles=1,
        minutes=0.4,
        seed=9,
        out=tmp_path / "logs",
        start=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2),
        config=replace(SimConfig(model_version=version).without_faults(), camera_size=(160, 96)),
        lake=str(store.root),
    )
    assert reports[0].model_version == version
    logs = sorted((tmp_path / "logs").rglob("*.mcap"))
    assert logs and all(p.stat().st_size > 0 for p in logs)


def test_steering_labels_and_networks_follow_the_model_config(curated, trained):
    """Steering is labelled 0 below the lane-keeping speed; each output has its ensemble of
    networks on its own inputs (steering never reads the objects), and the model drives with
    their mean."""
    import numpy as np

    from dataloop.policy.network import OUTPUTS, members, net_name, predict
    from dataloop.training.samples import LANE_KEEPING_MIN_MPS, build_samples

    store, *_ = curated
    bundle = B.load_bundle(store, B.latest(store)["version"])
    config = bundle.config
    samples = build_samples(store, bundle.card["dataset"]["version"], config)
    slow = samples.ego[:, -1, 0] < LANE_KEEPING_MIN_MPS
    assert slow.any() and (samples.targets[slow, 1] == 0).all()
    assert np.abs(samples.targets[~slow, 1]).max() < 0.6  # lane keeping, not parking

    assert members(config) == 5
    prefixes = {k.rsplit(".", 2)[0] for k in bundle.weights}
    assert prefixes == {net_name(m, o) for m in range(5) for o in OUTPUTS}
    ego, objects = samples.ego[:50], samples.objects[:50]
    out = predict(bundle.weights, bundle.normalisation, config, ego, objects)
    moved = predict(bundle.weights, bundle.normalisation, config, ego, objects + 5.0)
    assert np.array_equal(out[:, 1], moved[:, 1])  # steering: the lane estimate only
    assert not np.allclose(out[:, 0], moved[:, 0])  # acceleration reads the objects
    one = {**config, "ensemble": 1}  # the first member alone differs from the mean
    assert not np.allclose(predict(bundle.weights, bundle.normalisation, one, ego, objects), out)
