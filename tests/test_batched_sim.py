"""The batched simulator (#13) against highway-env on a fixed suite: collision outcome,
progress and score rank agree per scenario (and so do the gate's verdicts); results are
deterministic for a seed and do not depend on sharding; the geometry underneath (initial
traffic, lanes, oriented-box collisions, time to collision) matches highway-env's own.

The highway-env reference is the slow part: a small suite (2 roads x 8 seeds x 10 s plus
rebuilt scenarios with variations, 5 policies) computed once per module."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from dataloop.fleet.simulator.traffic import time_to_collision
from dataloop.policy.bundle import Bundle
from dataloop.policy.bundle_policy import BundlePolicy
from dataloop.policy.observation import (
    BASELINE,
    EGO_FEATURES,
    HISTORY,
    MAX_OBJECTS,
    OBJECT_FEATURES,
)
from dataloop.simulation.batched import ego
from dataloop.simulation.batched.initial import initial
from dataloop.simulation.batched.metrics import boxes_collide
from dataloop.simulation.batched.roads import ROADS
from dataloop.simulation.batched.runner import run_suite as run_batched
from dataloop.simulation.episode import build_world
from dataloop.simulation.gate import decide, load_gate
from dataloop.simulation.policies import AlwaysAccelerate, RegressesOn, Timid
from dataloop.simulation.runner import run_suite
from dataloop.simulation.scenario import Agent, Scenario, stock, variations

warnings.filterwarnings("ignore", category=DeprecationWarning)


def linear_driver(name: str, cruise: float, gain: float, follow: float) -> BundlePolicy:
    """A model bundle whose two-layer ReLU networks drive like a linear controller (cruise
    speed, the nearest object's distance, lane keeping): a learned-model stand-in that
    reads the whole observation, objects included, without training one."""
    n_ego = HISTORY * len(EGO_FEATURES)
    n_in = n_ego + HISTORY * MAX_OBJECTS * len(OBJECT_FEATURES)
    now = (HISTORY - 1) * len(EGO_FEATURES)
    nearest = n_ego + (HISTORY - 1) * MAX_OBJECTS * len(OBJECT_FEATURES)
    accel, steer = np.zeros(n_in), np.zeros(n_in)
    accel[now] = -gain * 10  # inputs are normalised by 10 below
    accel[nearest + 1] = -follow * 10
    steer[now + 3], steer[now + 4] = -3.0, -10.0  # lateral offset, heading error
    weights, norm = {}, {}
    for output, w, b in (("acceleration", accel, gain * cruise), ("steering", steer, 0.0)):
        # one network per output: relu(z) - relu(-z) = z
        weights[f"0.{output}.0.weight"] = np.stack([w, -w]).astype(np.float32)
        weights[f"0.{output}.0.bias"] = np.array([b, -b], np.float32)
        weights[f"0.{output}.2.weight"] = np.array([[1.0, -1.0]], np.float32)
        weights[f"0.{output}.2.bias"] = np.zeros(1, np.float32)
        norm[output] = {"x_mean": [0.0] * n_in, "x_std": [10.0] * n_in, "y_mean": 0, "y_std": 1}
    return BundlePolicy(Bundle(name, weights, norm, {}, {}))


def _rebuilt() -> list[Scenario]:
    out = []
    for k, (road, condition) in enumerate([("highway", "fog"), ("merge", "rain")]):
        agents = (Agent(22.0, 0, 18.0), Agent(-12.0, 1, 26.0), Agent(35.0, 1, 20.0))
        base = Scenario(f"log-{k}", "cut_in", road, 100 + k, 10.0, "log", condition, 24.0, agents)
        out += [base, *variations(base, 3, seed=7)]
    return out


SUITE = stock(["highway", "merge"], list(range(1, 9)), 10.0) + _rebuilt()
POLICIES = [
    BASELINE,
    Timid(),
    AlwaysAccelerate(),
    RegressesOn("merge", -3.0),
    linear_driver("linear-mlp", 22.0, 0.4, 0.05),
]


@pytest.fixture(scope="module")
def both() -> tuple[list[dict], list[dict]]:
    reference = run_suite(SUITE, POLICIES, workers=2)
    batched = run_batched(SUITE, POLICIES, workers=1)
    return reference, batched


def test_rows_pair_up_in_the_same_format(both):
    reference, batched = both
    assert len(batched) == len(reference) == len(SUITE) * len(POLICIES)
    for h, b in zip(reference, batched, strict=True):
        assert b.keys() == h.keys()
        assert (b["scenario_id"], b["model_version"]) == (h["scenario_id"], h["model_version"])


def test_collision_outcome_agrees(both):
    reference, batched = both
    agree = np.mean(
        [h["collided"] == b["collided"] for h, b in zip(reference, batched, strict=True)]
    )
    assert agree >= 0.95
    assert sum(h["collided"] for h in reference) >= 10  # the suite has collisions to agree on


def test_progress_agrees_within_5_percent(both):
    reference, batched = both
    rel = np.array(
        [
            abs(b["distance_m"] - h["distance_m"]) / max(abs(h["distance_m"]), 5.0)
            for h, b in zip(reference, batched, strict=True)
        ]
    )
    assert np.mean(rel <= 0.05) >= 0.95
    assert np.median(rel) <= 0.05


def test_score_rank_correlation_across_mixed_models(both):
    reference, batched = both
    rho = spearmanr([h["score"] for h in reference], [b["score"] for b in batched]).statistic
    assert rho >= 0.9
    models = [p if isinstance(p, str) else p.model_version for p in POLICIES]

    def means(rows):
        return [np.mean([r["score"] for r in rows if r["model_version"] == m]) for m in models]

    assert spearmanr(means(reference), means(batched)).statistic >= 0.9


def test_gate_verdicts_agree(both):
    reference, batched = both
    gate = load_gate()
    for candidate, production in [
        ("always-accelerate", BASELINE),
        (BASELINE, "timid"),
        ("regresses-on-merge-3.0", BASELINE),
        ("linear-mlp", BASELINE),
    ]:
        h = decide(reference, candidate, production, gate)
        b = decide(batched, candidate, production, gate)
        assert (h.passed, h.reasons) == (b.passed, b.reasons)


def test_deterministic_for_a_seed_and_independent_of_sharding(both):
    _, batched = both
    part = SUITE[:4] + SUITE[8:12] + SUITE[-4:]
    once = run_batched(part, POLICIES[:3], workers=1)
    sharded = run_batched(part, POLICIES[:3], workers=2, chunk=3)
    assert once == sharded
    first = {(r["scenario_id"], r["model_version"]): r for r in batched}
    for r in once:
        assert r == first[(r["scenario_id"], r["model_version"])]


def test_highway_env_only_roads_are_refused():
    with pytest.raises(ValueError, match="highway-env only"):
        run_batched(stock(["roundabout"], [1], 5.0), [BASELINE], workers=1)


# -- geometry -----------------------------------------------------------------------------


def test_initial_traffic_is_highway_envs():
    scenarios = stock(["highway", "merge"], [3, 17], 5.0) + _rebuilt()[::4]
    for scenario in scenarios:
        world = build_world(scenario)
        ini = initial(scenario)
        ours = np.array([ini.x, ini.y, ini.speed, ini.target_speed, ini.timer]).T
        theirs = np.array(
            [
                [v.position[0], v.position[1], v.speed, v.target_speed, v.timer]
                for v in world.road.vehicles
            ]
        )
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9, err_msg=scenario.id)


def test_lane_coordinates_and_closest_lane_are_highway_envs():
    world = build_world(stock(["merge"], [1], 5.0)[0])
    network = world.road.network
    lanes = [lane for to in network.graph.values() for ids in to.values() for lane in ids]
    road = ROADS["merge"]
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-10, 470, 400), rng.uniform(-3, 16, 400)])
    headings = rng.uniform(-0.5, 0.5, 400)
    for k, lane in enumerate(lanes):
        s, r = road.local(np.full(400, k), points[:, 0], points[:, 1])
        expected = np.array([lane.local_coordinates(p) for p in points])
        np.testing.assert_allclose(np.column_stack([s, r]), expected, atol=1e-9)
    closest = road.closest_lane(points[:, 0], points[:, 1], headings)
    index = list(road_index for road_index in network.lanes_dict())
    expected = [
        index.index(network.get_closest_lane_index(p, h))
        for p, h in zip(points, headings, strict=True)
    ]
    assert closest.tolist() == expected


def _box(x, y, heading, vx=0.0, vy=0.0, length=5.0, width=2.0) -> dict:
    return {
        k: np.array([v], float)
        for k, v in dict(
            x=x, y=y, heading=heading, length=length, width=width, vx=vx, vy=vy
        ).items()
    }


def test_rotated_boxes_whose_bounding_boxes_overlap_do_not_collide():
    # Two cars at 45 degrees, side by side: axis-aligned bounds overlap, the boxes do not.
    now, will, _ = boxes_collide(_box(0, 0, np.pi / 4), _box(2.2, -2.2, np.pi / 4), 0.1)
    assert not now[0] and not will[0]
    now, _, _ = boxes_collide(_box(0, 0, np.pi / 4), _box(1.0, -1.0, np.pi / 4), 0.1)
    assert now[0]


def test_swept_collision_is_caught_between_steps_and_parallel_lanes_are_not():
    # 30 m/s into a standing car 7.5 m ahead (2.5 m gap): not touching now, within 0.1 s yes.
    now, will, (tx, _) = boxes_collide(_box(0, 0, 0, vx=30.0), _box(7.5, 0, 0), 0.1)
    assert (
        not now[0] and will[0] and tx[0] == pytest.approx(-0.5)
    )  # pushed back, away from the other
    now, will, _ = boxes_collide(_box(0, 0, 0, vx=30.0), _box(8.0, 4.0, 0), 0.1)
    assert not now[0] and not will[0]


def test_box_collisions_match_highway_env_on_random_pairs():
    from highway_env.utils import are_polygons_intersecting

    rng = np.random.default_rng(1)
    n = 400
    a = {
        "x": np.zeros(n),
        "y": np.zeros(n),
        "heading": rng.uniform(-np.pi, np.pi, n),
        "length": np.full(n, 5.0),
        "width": np.full(n, 2.0),
        "vx": rng.uniform(-30, 30, n),
        "vy": rng.uniform(-5, 5, n),
    }
    b = {
        "x": rng.uniform(-7, 7, n),
        "y": rng.uniform(-5, 5, n),
        "heading": rng.uniform(-np.pi, np.pi, n),
        "length": rng.choice([2.0, 5.0], n),
        "width": np.full(n, 2.0),
        "vx": rng.uniform(-30, 30, n),
        "vy": np.zeros(n),
    }
    now, will, (tx, ty) = boxes_collide(a, b, 0.1)

    def polygon(box, k):
        c, s = np.cos(box["heading"][k]), np.sin(box["heading"][k])
        half = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * [
            box["length"][k] / 2,
            box["width"][k] / 2,
        ]
        points = half @ np.array([[c, s], [-s, c]]) + [box["x"][k], box["y"][k]]
        return np.vstack([points, points[:1]])

    hits = 0
    for k in range(n):
        da = np.array([a["vx"][k], a["vy"][k]]) * 0.1
        db = np.array([b["vx"][k], b["vy"][k]]) * 0.1
        inter, w, translation = are_polygons_intersecting(polygon(a, k), polygon(b, k), da, db)
        assert (now[k], will[k]) == (inter, w), k
        if w:
            hits += 1
            np.testing.assert_allclose([tx[k], ty[k]], translation, atol=1e-9)
    assert 50 < hits < n - 50


def test_time_to_collision_matches_the_episode_metric():
    rng = np.random.default_rng(2)
    B, N = 300, 6
    obj = {
        "x": rng.uniform(-20, 60, (B, N)),
        "y": rng.uniform(-6, 6, (B, N)),
        "vx": rng.uniform(0, 30, (B, N)),
        "vy": np.zeros((B, N)),
        "length": np.full((B, N), 5.0),
        "width": np.full((B, N), 2.0),
        "seen": rng.uniform(size=(B, N)) < 0.8,
    }
    speed = rng.uniform(0, 30, B)
    ours = ego.time_to_collision(obj, speed)
    for k in range(B):
        listed = [
            {f: obj[f][k, j] for f in ("x", "y", "vx", "length", "width")}
            for j in range(N)
            if obj["seen"][k, j]
        ]
        assert ours[k] == pytest.approx(time_to_collision(listed, speed[k]), abs=1e-12)
    assert np.isinf(ours).sum() > 10 and np.isfinite(ours).sum() > 10


# -- the gate on both backends ------------------------------------------------------------


def test_gate_runs_the_large_suite_batched_and_checks_the_backends_agree():
    from dataloop.simulation.batched.gate import agreement, decide, run_gate_suites

    reference = stock(["highway", "merge", "roundabout"], [1, 2], 5.0)
    config = {
        **load_gate()["suite"]["batched"],
        "seeds": 30,
        "seconds": 8.0,
    }
    broken = AlwaysAccelerate()
    run = run_gate_suites(reference, [broken, BASELINE], config, workers=1)
    assert (run.reference_scenarios, run.batched_scenarios) == (6, 60)
    assert len(run.rows) == 2 * (6 + 60)
    assert run.reasons == [] and run.agreement["pairs"] == 8
    assert run.agreement["collision_agreement"] == 1.0
    verdict = decide(run, broken.model_version, BASELINE, load_gate())
    assert not verdict.passed
    scenarios = {c["category"]: c["scenarios"] for c in verdict.categories}
    assert scenarios == {"highway": 32, "merge": 32, "roundabout": 2}
    # The large suite is what makes a regression significant in a road.
    assert {c["category"]: c["verdict"] for c in verdict.categories}["merge"] == "regression"
    # A backend that disagreed on the reference scenarios fails the gate by itself.
    reference_rows = [r for r in run.rows if r["scenario_id"] in {s.id for s in reference}]
    wrong = [{**r, "collided": not r["collided"]} for r in reference_rows]
    assert agreement(reference_rows, wrong)["collision_agreement"] == 0.0
    assert run_gate_suites(reference, [BASELINE], {"seeds": 0}, workers=1).batched_scenarios == 0
