"""The simulation gate (#7): a broken model fails, a better one passes, a regression in one
category fails even when the mean improves, results are deterministic, and the gate blocks
what is downstream of it in Dagster. A small suite (2 roads x 6 seeds, 6 s) keeps it cheap."""

from __future__ import annotations

import warnings

import dagster as dg
import numpy as np
import pytest

from dataloop.defs.resources import LakeResource
from dataloop.defs.simulation.assets import gate_passed, simulation_report
from dataloop.lake.layout import GATE_RESULT_KEY, PRODUCTION_KEY
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json, write_json
from dataloop.policy.observation import BASELINE, BaselineExpert
from dataloop.release.rollout import production_version
from dataloop.simulation.episode import build_world, run_episode
from dataloop.simulation.gate import decide, gate_result, load_gate
from dataloop.simulation.gate_run import GateOptions, NoCandidate, gate_candidate
from dataloop.simulation.open_loop import rollout_errors, summarise
from dataloop.simulation.policies import AlwaysAccelerate, RegressesOn, Timid
from dataloop.simulation.runner import run_suite
from dataloop.simulation.scenario import Agent, Scenario, stock, suite_version, variations
from dataloop.simulation.score import score, subscores
from dataloop.simulation.suite import clip_scenario, load_suite

warnings.filterwarnings("ignore", category=DeprecationWarning)

SUITE = stock(["highway", "merge"], [1, 2, 3, 4, 5, 6], 6.0)
BROKEN, TIMID = AlwaysAccelerate(), Timid()
MERGE_REGRESSION = RegressesOn("merge", -3.0)
SLOW_ON_HIGHWAY = RegressesOn("highway", -3.0)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    policies = [BASELINE, BROKEN, TIMID, MERGE_REGRESSION, SLOW_ON_HIGHWAY]
    return run_suite(SUITE, policies, workers=2)


def test_broken_model_fails_the_gate(rows):
    verdict = decide(rows, BROKEN.model_version, BASELINE, load_gate())
    assert not verdict.passed
    assert verdict.candidate["at_fault_collision_rate"] > 0.5
    assert any("at-fault collision rate" in r for r in verdict.reasons)
    assert {c["verdict"] for c in verdict.categories} == {"regression"}


def test_better_model_passes(rows):
    verdict = decide(rows, BASELINE, TIMID.model_version, load_gate())
    assert verdict.passed, verdict.reasons
    assert verdict.candidate["mean_score"] > verdict.production["mean_score"]
    # ... and slower driving than a released model (the expert on highway) is a significant
    # regression, while against the expert driver itself (nothing released yet) it only
    # reports the comparison: a first model is judged on the absolute thresholds.
    slower = decide(rows, TIMID.model_version, MERGE_REGRESSION.model_version, load_gate())
    assert not slower.passed and any(r.startswith("highway:") for r in slower.reasons)
    first = decide(rows, TIMID.model_version, BASELINE, load_gate())
    assert first.passed, first.reasons
    assert {c["category"]: c["verdict"] for c in first.categories}["highway"] == "regression"


def test_regression_in_one_category_fails_although_the_mean_improves(rows):
    gate = load_gate()
    verdict = decide(rows, MERGE_REGRESSION.model_version, SLOW_ON_HIGHWAY.model_version, gate)
    assert verdict.candidate["mean_score"] > verdict.production["mean_score"]
    by_category = {c["category"]: c for c in verdict.categories}
    assert by_category["merge"]["verdict"] == "regression"
    assert by_category["merge"]["p_value"] < gate["regression"]["alpha"]
    assert by_category["highway"]["verdict"] == "better"
    assert not verdict.passed
    assert verdict.reasons == [r for r in verdict.reasons if r.startswith("merge:")]


def test_identical_models_are_no_regression(rows):
    verdict = decide(rows, BASELINE, BASELINE, load_gate())
    assert verdict.passed
    assert all(c["p_value"] == 1.0 for c in verdict.categories)
    few = [r for r in rows if r["scenario_id"] in {"stock-merge-1", "stock-merge-2"}]
    small = decide(few, BROKEN.model_version, BASELINE, load_gate())
    assert small.categories[0]["verdict"] == "too few scenarios to test"


def test_results_are_deterministic_for_a_seed(rows):
    again = run_suite(SUITE[:2] + SUITE[6:8], [TIMID], workers=1)
    first = {r["scenario_id"]: r for r in rows if r["model_version"] == TIMID.model_version}
    for r in again:
        assert r == first[r["scenario_id"]]


def test_score_formula():
    ep = run_episode(SUITE[0], TIMID)
    sub = subscores(ep, ep.distance_m * 2)
    assert sub["progress"] == pytest.approx(0.5)
    expected = (5 * 0.5 + 5 * sub["ttc"] + 2 * sub["comfort"]) / 12
    assert score(sub) == pytest.approx(expected * sub["no_at_fault_collision"])
    assert score({**sub, "drivable_area": 0.0}) == 0.0


def test_rebuilt_scenario_places_logged_neighbours_and_variations_differ():
    clip = {
        "clip_id": "c1",
        "scenario": "cut_in",
        "road": "highway",
        "conditions": "rain",
        "vehicle_id": "v1",
        "drive_id": "d1",
        "start_t": "2026-01-01T00:00:00",
    }
    tracks = [{"x": 20.0, "y": 0.3, "vx": 18.0}, {"x": -15.0, "y": 4.1, "vx": 25.0}]
    sc = clip_scenario(clip, 22.0, tracks, 5.0)
    assert sc.agents == (Agent(20.0, 0, 18.0), Agent(-15.0, 1, 25.0))
    world = build_world(sc)
    ahead = [world.ego_frame(v.position[0], v.position[1], 0, 0) for v in world.others]
    lanes_left = [round(y / 4.0) for _, y, *_ in ahead]
    if len(world.others) == 2:  # the ego may be in the left lane: no lane left of it then
        assert sorted(round(x) for x, *_ in ahead) == [-15, 20] and sorted(lanes_left) == [0, 1]
    assert world.ego.speed == 22.0
    assert Scenario.from_dict(sc.to_dict()) == sc
    varied = variations(sc, 4, seed=3)
    assert {v.origin["variation"] for v in varied} == {"add", "remove", "perturb", "condition"}
    assert len({suite_version([v]) for v in varied}) == 4
    assert varied == variations(sc, 4, seed=3)


def test_gate_candidate_records_the_result_without_dagster(tmp_path):
    """The stage's entry point, called as plain Python: it gates the candidate against
    production, stores the record (with every row) once and points the latest result at it;
    ``gate_result`` reads either back."""
    store = LocalStore(tmp_path / "lake")
    with pytest.raises(NoCandidate):  # no candidate given, no trained model in the lake
        gate_candidate(store, None)
    spec = "py:dataloop.simulation.policies:AlwaysAccelerate"
    options = GateOptions(spec, ["highway"], [1, 2, 3, 4, 5, 6], 4.0, max_clips=0, workers=1)
    gated = gate_candidate(store, str(tmp_path / "lake"), options)
    record = read_json(store, gated.key)
    assert record["candidate"] == spec and record["production"] == BASELINE
    assert record["passed"] is False and gated.verdict.passed is False
    assert any("at-fault collision rate" in r for r in record["reasons"])
    rows = record["results"]
    assert len(rows) == 12
    assert {r["model_version"] for r in rows} == {BROKEN.model_version, BASELINE}
    assert gated.versions == (BROKEN.model_version, BASELINE) and gated.scenarios == 6
    assert record["backends"]["batched_scenarios"] == 0  # a run that overrides seeds
    assert [s.id for s in load_suite(store, record["suite"])] == [
        f"stock-highway-{i}" for i in range(1, 7)
    ]
    summary = {k: v for k, v in record.items() if k != "results"}
    latest = {**summary, "results_key": gated.key}
    assert read_json(store, GATE_RESULT_KEY) == latest
    assert gate_result(store) == gate_result(store, gated.key) == latest
    assert gate_result(store, rows=True)["results"] == rows
    assert gate_result(LocalStore(tmp_path / "empty")) is None


@dg.asset(deps=[simulation_report], group_name="release")
def release_stub() -> None:
    """Stands for the OTA release downstream of the gate."""


def _materialize(tmp_path, candidate: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [simulation_report, gate_passed, release_stub],
        resources={"lake": LakeResource(url=str(tmp_path / "lake"))},
        run_config={
            "ops": {
                "simulation_report": {
                    "config": {
                        "candidate": candidate,
                        "roads": ["highway"],
                        "seeds": [1, 2, 3, 4, 5, 6],
                        "seconds": 4.0,
                        "max_clips": 0,
                        "workers": 1,
                    }
                }
            }
        },
        raise_on_error=False,
    )


def test_failing_gate_blocks_the_release_in_dagster(tmp_path):
    store = LocalStore(tmp_path / "lake")
    assert production_version(store) == BASELINE
    result = _materialize(tmp_path, "py:dataloop.simulation.policies:AlwaysAccelerate")
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [False]
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"simulation_report"}
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert "| highway | 6 |" in meta["categories"].value
    assert meta["score_distributions"].value.startswith("![scores](data:image/png;base64,")
    stored = read_json(store, meta["results_key"].value)
    assert len(stored["results"]) == 12 and stored["passed"] is False
    suite = load_suite(store, meta["suite_version"].value)
    assert [s.id for s in suite] == [f"stock-highway-{i}" for i in range(1, 7)]
    assert suite_version(suite) == meta["suite_version"].value


def test_passing_gate_lets_the_release_run(tmp_path):
    store = LocalStore(tmp_path / "lake")
    write_json(store, PRODUCTION_KEY, {"model_version": "py:dataloop.simulation.policies:Timid"})
    result = _materialize(tmp_path, BASELINE)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"simulation_report", "release_stub"}


def test_open_loop_displacement_of_the_integrated_controls():
    n = 60
    ego = np.zeros((n, 5))
    ego[:, 0] = 20.0  # logged: constant 20 m/s, straight
    frames = {"ego": ego, "objects": np.zeros((n, 8, 7)), "targets": np.zeros((n, 2))}
    expert = summarise(rollout_errors(frames, BaselineExpert()))
    assert expert["windows"] == 3
    assert expert["ade_m"] == pytest.approx(0.0) and expert["rmse_acceleration"] == 0.0
    broken = summarise(rollout_errors(frames, BROKEN))
    # 4 m/s^2 for 3 s: 0.5 * 4 * t^2 ahead (discretised), 18.6 m at the end.
    assert broken["fde_m"] == pytest.approx(0.5 * 4.0 * 3.0 * 3.1, rel=1e-6)
    assert 0 < broken["ade_m"] < broken["fde_m"]
    assert broken["rmse_acceleration"] == pytest.approx(4.0)
