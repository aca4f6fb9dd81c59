"""The simulated fleet: determinism, and its realism claims checked statistically on the logs
it writes (decoded by the ingest decoder, as the cloud sees them)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from dataloop.fleet import contract
from dataloop.fleet.simulator.camera import CONDITIONS, Camera, luma, render_frame
from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.ingest.decode import decode_log
from dataloop.policy.bundle_policy import load_policy

START = datetime(2026, 11, 25, 8, tzinfo=UTC)
HIGHWAY = {"highway": 1.0}


def _decode(path: Path):
    vehicle = path.parent.name
    with path.open("rb") as f:
        return decode_log(f, vehicle=vehicle, drive=path.stem)


@pytest.fixture(scope="module")
def busy_fleet(tmp_path_factory):
    """Two vehicles, three highway minutes each, with corner cases and signal faults at high
    rates (and no file faults, so every log decodes)."""
    config = replace(
        SimConfig().without_faults(),
        roads=HIGHWAY,
        corner_cases_per_hour={
            "cut_in": 100.0,
            "hard_brake": 100.0,
            "stalled_vehicle": 20.0,
            "pedestrian_crossing": 40.0,
        },
        signal_faults_per_hour={
            "camera_freeze": 60.0,
            "gnss_jump": 60.0,
            "clock_backwards": 40.0,
            "nan_signal": 60.0,
        },
    )
    out = tmp_path_factory.mktemp("busy")
    reports = simulate_fleet(vehicles=2, minutes=3, seed=11, out=out, start=START, config=config)
    return config, reports


def _drives(reports):
    for r in reports:
        for d in r.drives:
            path = Path(d["path"])
            yield path, json.loads(path.with_suffix(".truth.json").read_text())


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    config = replace(SimConfig(), roads={"merge": 1.0})
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        reports = simulate_fleet(
            vehicles=1, minutes=0.3, seed=seed, out=tmp_path / name, start=START, config=config
        )
        runs[name] = {Path(d["path"]).name: Path(d["path"]).read_bytes() for d in reports[0].drives}
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() == runs["c"].keys()
    assert all(runs["a"][k] != runs["c"][k] for k in runs["a"])


def test_channel_rates_match_the_contract(tmp_path):
    config = replace(SimConfig().without_faults(), roads=HIGHWAY)
    reports = simulate_fleet(
        vehicles=1, minutes=0.5, seed=3, out=tmp_path, start=START, config=config
    )
    for path, _ in _drives(reports):
        log = _decode(path)
        seconds = (log.end_ns - log.start_ns) / 1e9
        for channel in contract.CHANNELS:
            if channel.rate_hz:
                rate = (log.messages[channel.topic] - 1) / seconds
                assert abs(rate - channel.rate_hz) <= 0.02 * channel.rate_hz, channel.topic


def test_corner_cases_are_reproduced_at_the_requested_rate(busy_fleet):
    """Tolerance: the applied count is within 35 % (and 2 events) of rate x driving time;
    cases that find no suitable vehicle within 10 s are recorded as not applied."""
    config, reports = busy_fleet
    hours = sum(r.seconds for r in reports) / 3600
    truths = [t for _, t in _drives(reports)]
    for kind, per_hour in config.corner_cases_per_hour.items():
        applied = sum(c["type"] == kind and c["applied"] for t in truths for c in t["corner_cases"])
        expected = per_hour * hours
        assert abs(applied - expected) <= max(2, 0.35 * expected), (kind, applied, expected)


def test_injected_near_misses_are_close_calls(busy_fleet):
    _, reports = busy_fleet
    for _, truth in _drives(reports):
        close_calls = [n["t"] for n in truth["near_misses"]] + [
            d["t"] for d in truth["disengagements"]
        ]
        for case in truth["corner_cases"]:
            if case["type"] == "near_miss" and case["applied"]:
                # TTC fell below 2 s (or the safety driver stepped in) within 4 s
                assert any(0 <= t - case["t"] <= 4.0 for t in close_calls), (case, truth)


def test_file_faults_truncate_logs_and_drop_channels(tmp_path):
    from dataloop.ingest.decode import DecodeError

    for fault, expect in (("truncated_file", "truncated"), ("missing_channel", "missing")):
        config = replace(
            SimConfig().without_faults(),
            roads={"merge": 1.0},
            file_faults_per_drive={fault: 1.0},
        )
        reports = simulate_fleet(
            vehicles=1, minutes=0.2, seed=2, out=tmp_path / fault, start=START, config=config
        )
        path, truth = next(_drives(reports))
        assert [f["type"] for f in truth["faults"]] == [fault]
        try:
            log = _decode(path)
        except DecodeError as err:
            assert expect == "truncated" == err.code
            continue
        if expect == "truncated":
            assert log.truncated
        else:  # the dropped channel's table is empty (the fleet profile's check names it)
            (topic,) = [f["topic"] for f in truth["faults"]]
            (table,) = [c.table for c in contract.CHANNELS if c.topic == topic]
            assert log.tables[table].num_rows == 0


def test_faults_are_in_the_logs_at_the_requested_rate(busy_fleet):
    config, reports = busy_fleet
    hours = sum(r.seconds for r in reports) / 3600
    found = {k: 0 for k in config.signal_faults_per_hour}
    planned = {k: 0 for k in config.signal_faults_per_hour}
    for path, truth in _drives(reports):
        for f in truth["faults"]:
            planned[f["type"]] += 1
        t = _decode(path).tables
        speed = np.array(t["vehicle_state"].column("speed_mps").to_pylist(), dtype=float)
        found["nan_signal"] += int(np.sum(np.diff(np.isnan(speed).astype(int)) == 1))
        imu_t = np.array(t["imu"].column("t").cast("int64").to_pylist())
        found["clock_backwards"] += int(np.sum(np.diff(imu_t) < 0))
        sha = t["frames"].column("jpeg_sha256").to_pylist()
        repeats = [a == b for a, b in zip(sha, sha[1:], strict=False)]
        found["camera_freeze"] += sum(
            1 for a, b in zip([False, *repeats], repeats, strict=False) if b and not a
        )
        lat = np.radians(t["gnss"].column("latitude").to_numpy())
        lon = np.radians(t["gnss"].column("longitude").to_numpy())
        step_m = 6_371_000 * np.hypot(np.diff(lat), np.diff(lon) * np.cos(lat[1:]))
        # 10 Hz: 40 m in one step is 400 m/s. A jump shows as a step away and a step back.
        found["gnss_jump"] += (int(np.sum(step_m > 40.0)) + 1) // 2
    for kind, per_hour in config.signal_faults_per_hour.items():
        expected = per_hour * hours
        assert abs(planned[kind] - expected) <= max(2, 0.2 * expected), (kind, planned, expected)
        # what the log shows matches what was planned (bursts may merge or touch the end)
        assert planned[kind] * 0.7 - 1 <= found[kind] <= planned[kind], (kind, found, planned)


def test_every_disengagement_follows_low_ttc_or_leaving_the_road(busy_fleet):
    config, reports = busy_fleet
    total = 0
    for path, truth in _drives(reports):
        events = _decode(path).tables["events"].to_pylist()
        logged = [e for e in events if e["type"] == "disengagement"]
        assert len(logged) == len(truth["disengagements"])
        for d in truth["disengagements"]:
            total += 1
            assert d["reason"] in ("low_ttc", "off_road")
            if d["reason"] == "low_ttc":
                assert d["ttc"] < config.ttc_takeover_s
    assert total > 0, "hard brakes and cut-ins at these rates make the safety driver act"


def test_night_is_darker_and_fog_has_less_contrast():
    objects = [
        {
            "id": i,
            "object_class": "car",
            "x": 15.0 + 12 * i,
            "y": (-1) ** i * 3.5 * (i % 2),
            "length": 4.5,
            "width": 1.9,
            "height": 1.5,
        }
        for i in range(4)
    ]
    lines = [-5.25, -1.75, 1.75, 5.25]
    stats = {}
    for condition in CONDITIONS:
        frames = [
            luma(render_frame(objects, lines, condition, np.random.default_rng(i), Camera()))
            for i in range(5)
        ]
        stats[condition] = (np.mean([f.mean() for f in frames]), np.mean([f.std() for f in frames]))
    assert stats["night"][0] < 0.5 * stats["day"][0]
    assert stats["dusk"][0] < stats["day"][0]
    assert stats["fog"][1] < 0.6 * stats["day"][1]


def test_logged_frames_follow_the_recorded_conditions(tmp_path):
    brightness = {}
    for condition in ("day", "night"):
        config = replace(SimConfig().without_faults(), roads=HIGHWAY, conditions={condition: 1.0})
        reports = simulate_fleet(
            vehicles=1, minutes=0.2, seed=1, out=tmp_path / condition, start=START, config=config
        )
        path, truth = next(_drives(reports))
        assert truth["conditions"] == condition
        log = _decode(path)
        assert log.drive_metadata["conditions"] == condition
        from dataloop.ingest.frames import read_frame
        from dataloop.lake.local import LocalStore

        store = LocalStore(path.parent)
        rows = log.tables["frames"].to_pylist()[::20]
        brightness[condition] = np.mean(
            [luma(read_frame(store, path.name, r)).mean() for r in rows]
        )
    assert brightness["night"] < 0.5 * brightness["day"]


def test_only_known_models_can_drive(tmp_path):
    from dataloop.lake.local import LocalStore

    assert load_policy("baseline").model_version == "baseline"
    with pytest.raises(LookupError, match="no model bundle 'model-v7'"):
        load_policy("model-v7", LocalStore(tmp_path / "lake"))


def test_geometry_helpers():
    from dataloop.fleet.simulator.traffic import time_to_collision

    lead = {"x": 22.5, "y": 0.0, "vx": 10.0, "length": 5.0, "width": 2.0}
    assert math.isclose(time_to_collision([lead], ego_speed=20.0), 1.75)
    beside = {**lead, "y": 3.5}
    assert time_to_collision([beside], ego_speed=20.0) == math.inf


def test_crosswind_turns_the_car_not_the_logged_steering(tmp_path):
    """The wind turns the car: its yaw is in the logged yaw rate, not in the logged steering
    angle, which stays the driver's own (a label the observation explains)."""
    stats = {}
    for wind in (0.0, 0.01):
        config = replace(
            SimConfig().without_faults(),
            roads=HIGHWAY,
            crosswind_rad=wind,
            corner_cases_per_hour={},
        )
        reports = simulate_fleet(
            vehicles=1, minutes=0.5, seed=3, out=tmp_path / str(wind), start=START, config=config
        )
        (path, _), *_ = _drives(reports)
        vs = _decode(path).tables["vehicle_state"]
        speed, steer, yaw = (
            vs[c].to_numpy() for c in ("speed_mps", "steering_angle_rad", "yaw_rate_radps")
        )
        beta = np.arctan(0.5 * np.tan(steer))
        from_steering = speed * np.sin(beta) / 2.5  # kinematic bicycle, 5 m car
        stats[wind] = {
            "unexplained_yaw": float(np.std(yaw - from_steering)),
        }
    calm, windy = stats[0.0], stats[0.01]
    # Without wind the car turns exactly as its logged steering says (up to CAN noise); with
    # it, it turns by more than the steering explains.
    assert calm["unexplained_yaw"] < 0.01, stats
    assert windy["unexplained_yaw"] > 5 * calm["unexplained_yaw"], stats
