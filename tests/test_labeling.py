"""Offboard auto-labels on fleet-simulator drives: they beat the car's own perception on
every metric against ground truth, and a parameter change relabels. The two-axis smoother
equals the textbook 4-state filter."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dataloop.fleet.simulator.config import SimConfig
from dataloop.labeling.hour import METRICS
from dataloop.labeling.offboard import smooth_track
from dataloop.lake import ledger
from tests.helpers import hourly_assets, materialize_hours, simulated_lake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeling")
    config = replace(
        SimConfig(),
        roads={"highway": 1.0},
        conditions={"day": 1.0, "night": 1.0, "rain": 1.0, "fog": 1.0},
        file_faults_per_drive={"truncated_file": 0.0, "missing_channel": 0.0},
    )
    store, reports, instance, hours = simulated_lake(root, config, vehicles=4, minutes=1.0, seed=8)
    return store, reports, hours, instance


def test_offboard_beats_onboard_on_every_metric_in_every_condition(labelled):
    store, reports, _, _ = labelled
    records = [
        ledger.section(store, r.vehicle, d["drive"], ledger.LABELS)
        for r in reports
        for d in r.drives
    ]
    scored = [r for r in records if r and "offboard" in r]
    by_condition: dict[str, list] = {}
    for r in scored:
        by_condition.setdefault(r["conditions"], []).append(r)
    assert len(by_condition) >= 2, "the fleet drove in several conditions"
    for condition, rs in [("all", scored), *by_condition.items()]:
        for metric in METRICS:
            onboard = sum(r["onboard"][metric] for r in rs) / len(rs)
            offboard = sum(r["offboard"][metric] for r in rs) / len(rs)
            assert offboard < onboard, (condition, metric, onboard, offboard)


def test_a_parameter_change_relabels(labelled, tmp_path, monkeypatch):
    store, reports, hours, instance = labelled
    vehicle, drive = reports[0].vehicle, reports[0].drives[0]["drive"]
    before = ledger.section(store, vehicle, drive, ledger.LABELS)
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "assets", rules)
    params = rules / "labeling" / "offboard.yaml"
    params.write_text(params.read_text().replace("min_frames: 8", "min_frames: 12"))
    monkeypatch.setenv("DATALOOP_RULES", str(rules))
    assets = hourly_assets()
    labels = assets[-1]
    assert labels.code_versions_by_key[labels.key] != f"offboard.{before['labeller_version']}"
    result = materialize_hours(store, hours, assets, instance, selection=[labels])
    after = ledger.section(store, vehicle, drive, ledger.LABELS)
    assert after["labeller_version"] != before["labeller_version"]
    assert after["labeller_params"]["ghosts"]["min_frames"] == 12
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["onboard_vs_offboard"].records
    monkeypatch.delenv("DATALOOP_RULES")
    hourly_assets()


def test_review_export_is_valid_coco_and_an_import_changes_exactly_that_track(labelled, tmp_path):
    import io
    import json

    import pyarrow.parquet as pq
    from PIL import Image
    from pycocotools.coco import COCO

    from dataloop.labeling.review import export_coco, import_reviewed

    store, reports, _, _ = labelled
    drives = [(r.vehicle, d["drive"]) for r in reports for d in r.drives]
    coco, images = export_coco(store, drives, below=0.95)
    path = tmp_path / "review.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))  # the reference reader loads it and indexes it
    assert api.getAnnIds() and len(api.getImgIds()) == len(images)
    for ann in api.loadAnns(api.getAnnIds()[:50]):
        x, y, w, h = ann["bbox"]
        img = api.loadImgs(ann["image_id"])[0]
        assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
    name = next(iter(images))
    assert Image.open(io.BytesIO(images[name])).size == (320, 192)

    # A reviewer relabels one track as a truck: only that track changes.
    target = coco["annotations"][0]["attributes"]
    vehicle, drive, track = target["vehicle"], target["drive"], target["track_id"]
    truck = next(c["id"] for c in coco["categories"] if c["name"] == "truck")
    reviewed = {
        **coco,
        "annotations": [
            {**a, "category_id": truck}
            for a in coco["annotations"]
            if a["attributes"]["track_id"] == track
            and a["attributes"]["drive"] == drive
            and a["attributes"]["vehicle"] == vehicle
        ],
    }
    before_key = ledger.section(store, vehicle, drive, ledger.LABELS)["labels"]
    before = pq.read_table(io.BytesIO(store.get(before_key))).to_pylist()
    changes = import_reviewed(store, reviewed)
    assert [(c["track_id"], c["class_to"]) for c in changes] == [(track, "truck")]
    record = ledger.section(store, vehicle, drive, ledger.LABELS)
    after = pq.read_table(io.BytesIO(store.get(record["labels"]))).to_pylist()
    assert record["labels"] != before_key and record["labels_before_review"] == before_key
    assert record["reviews"][-1]["track_id"] == track
    assert len(after) == len(before)
    for b, a in zip(before, after, strict=True):
        if b["track_id"] == track:
            assert a["object_class"] == "truck" and a["reviewed"]
        else:
            assert a == b


def _one_track(t_s: np.ndarray, z: np.ndarray, r: np.ndarray, q: float) -> np.ndarray:
    """The 4-state Kalman filter and RTS smoother of one track in 4x4 matrices (the
    labeller's own until 2026-12): the reference."""
    n, eye = len(t_s), np.eye(4)
    xf, xp = np.zeros((n, 4)), np.zeros((n, 4))
    pf, pp = np.zeros((n, 4, 4)), np.zeros((n, 4, 4))
    x, p, fs = z[0].copy(), np.diag(r[0]), []
    for i in range(n):
        dt = t_s[i] - t_s[i - 1] if i else 0.0
        f = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        a4, a3, a2 = dt**4 / 4, dt**3 / 2, dt**2
        qm = q * q * np.array([[a4, 0, a3, 0], [0, a4, 0, a3], [a3, 0, a2, 0], [0, a3, 0, a2]])
        if i:
            x, p = f @ x, f @ p @ f.T + qm
        xp[i], pp[i] = x, p
        fs.append(f)
        if not np.isnan(z[i, 0]):
            k = p @ np.linalg.inv(p + np.diag(r[i]))
            x, p = x + k @ (z[i] - x), (eye - k) @ p
        xf[i], pf[i] = x, p
    xs = xf.copy()
    for i in range(n - 2, -1, -1):
        c = pf[i] @ fs[i + 1].T @ np.linalg.inv(pp[i + 1])
        xs[i] = xf[i] + c @ (xs[i + 1] - xp[i + 1])
    return xs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_two_axis_smoother_equals_the_four_state_filter(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        t_s = np.concatenate([[0.0], np.cumsum(rng.uniform(0.08, 0.12, n - 1))])  # 10 Hz, jitter
        z = rng.normal(0, 20, (n, 4))
        z[1:][rng.random(n - 1) < 0.3] = np.nan  # unseen frames (the first is seen)
        r = rng.uniform(0.05, 2.0, (n, 4))
        np.testing.assert_allclose(
            smooth_track(t_s, z, r, 1.5), _one_track(t_s, z, r, 1.5), rtol=0, atol=1e-9
        )
