"""Compliance: faces blurred on a real photograph, geofence coarsening and exclusion,
retention per zone, and a drive made compliant end to end."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from skimage import data as skdata

from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.hour import arrival_hours
from dataloop.lake import ledger
from dataloop.lake.local import LocalStore
from dataloop.quality.anonymise import Detection, HaarDetector, anonymise_jpeg, load_detector
from dataloop.quality.compliance import make_compliant
from dataloop.quality.geofence import Zone, apply_geofence, load_zones
from dataloop.quality.retention import load_retention, sweep
from dataloop.quality.suites import rules_dir
from tests.helpers import ingest_hour, upload_days

REPO = Path(__file__).resolve().parents[1]


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    return buf.tobytes()


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)


def _detail(gray: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: what blurring removes."""
    return float(np.abs(np.diff(gray, axis=1)).mean())


def test_face_blurred_on_a_real_photograph_and_the_rest_intact():
    original = _jpeg(skdata.astronaut())
    out, found = anonymise_jpeg(original, HaarDetector(), quality=95)
    faces = [d for d in found if d.kind == "face"]
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    before, after = _decode(original), _decode(out)
    face = (slice(y, y + h), slice(x, x + w))
    assert np.abs(before[face] - after[face]).mean() > 10, "the face changed"
    assert _detail(after[face]) < 0.3 * _detail(before[face]), "and lost its detail"
    m = int(0.15 * max(w, h)) + 4
    outside = np.ones(before.shape, bool)
    outside[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m] = False
    assert np.abs(before[outside] - after[outside]).mean() < 2.0, "the rest stays intact"


class WholeFrame:
    """A stand-in detector, to prove detectors plug in by name."""

    name, version = "whole-frame", "1"

    def detect(self, gray):
        return [Detection("face", (0, 0, gray.shape[1], gray.shape[0]))]


def test_detectors_plug_in_by_name():
    detector = load_detector("tests.test_compliance:WholeFrame")
    original = _jpeg(skdata.astronaut())
    out, found = anonymise_jpeg(original, detector)
    assert found[0].kind == "face"
    assert _detail(_decode(out)) < 0.3 * _detail(_decode(original))


def test_geofence_coarsens_inside_and_leaves_outside_alone():
    square = np.array([[48.0, 11.0], [48.0, 11.1], [48.1, 11.1], [48.1, 11.0]])
    zones = [Zone("z", "coarsen", square, precision_m=500.0)]
    rng = np.random.default_rng(0)
    lat = np.concatenate([48.02 + rng.uniform(0, 0.05, 50), 48.5 + rng.uniform(0, 0.01, 50)])
    lon = np.concatenate([11.02 + rng.uniform(0, 0.05, 50), 11.5 + rng.uniform(0, 0.01, 50)])
    clat, clon, result = apply_geofence(lat, lon, zones)
    assert result.coarsened_points == 50 and result.zones_hit == ["z"] and not result.excluded_by
    assert np.array_equal(clat[50:], lat[50:]) and np.array_equal(clon[50:], lon[50:])
    moved_m = np.hypot((clat[:50] - lat[:50]) * 111_320, (clon[:50] - lon[:50]) * 111_320 * 0.67)
    assert moved_m.max() <= 500 and moved_m.mean() > 50
    assert len(np.unique(clat[:50])) < 15, "snapped to a 500 m grid"
    exclude = [Zone("x", "exclude", square)]
    assert apply_geofence(lat, lon, exclude)[2].excluded_by == ["x"]
    assert apply_geofence(lat[50:], lon[50:], exclude)[2].excluded_by == []


def test_repository_geofence_and_retention_rules_load():
    zones = load_zones(rules_dir() / "quality" / "geofence.yaml")
    assert {z.action for z in zones} == {"coarsen", "exclude"}
    assert set(load_retention(rules_dir() / "quality" / "retention.yaml")) >= {"raw", "derived"}


def test_retention_deletes_only_what_each_zone_no_longer_keeps(tmp_path):
    store = LocalStore(tmp_path / "lake")
    now = datetime.now(UTC)
    ages = {
        "raw/old": 400,
        "raw/new": 10,
        "tables/old": 800,
        "tables/new": 100,
        "ingest/drives/keep.json": 5000,
    }
    for key, days in ages.items():
        store.put(key, b"x")
        when = (now - timedelta(days=days)).timestamp()
        os.utime(store.path(key), (when, when))
    zones = {
        "raw": {"prefixes": ["raw/"], "days": 365},
        "derived": {"prefixes": ["tables/"], "days": 730},
    }
    report = sweep(store, zones, now)
    assert report["raw"]["deleted"] == 1 and report["derived"]["deleted"] == 1
    assert {o.key for o in store.list("")} == {"raw/new", "tables/new", "ingest/drives/keep.json"}
    bad = tmp_path / "r.yaml"
    bad.write_text("zones: {index: {prefixes: [ingest/], days: 1}}")
    with pytest.raises(ValueError):
        load_retention(bad)


def test_a_drive_is_made_compliant_once(tmp_path, make_log):
    store = LocalStore(tmp_path / "lake")
    upload_drive(store, make_log(drive="c", seconds=3.0), vehicle="veh-1")
    for hour in arrival_hours(store, upload_days(store)):
        ingest_hour(store, hour)
    record = ledger.section(store, "veh-1", "c", ledger.INGEST)
    # the synthetic drive starts at the Munich origin: inside this zone
    zones = [
        Zone(
            "all-of-munich",
            "coarsen",
            np.array([[48.0, 11.4], [48.0, 11.8], [48.3, 11.8], [48.3, 11.4]]),
            1000.0,
        )
    ]
    start = time.process_time()
    result = make_compliant(store, record, HaarDetector(), zones, "v1")
    assert time.process_time() - start < 30
    assert result["frames"] == record["tables"]["frames"]["rows"] == 30
    assert result["geofence"]["coarsened_points"] == record["tables"]["gnss"]["rows"]
    index = pq.read_table(io.BytesIO(store.get(result["frame_index"]))).to_pylist()
    pack = store.get(result["frame_pack"])
    for row in index[::7]:
        jpeg = pack[row["offset"] : row["offset"] + row["length"]]
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    gnss = pq.read_table(io.BytesIO(store.get(result["gnss_public"])))
    assert len(set(gnss.column("latitude").to_pylist())) <= 2
    assert ledger.section(store, "veh-1", "c", ledger.COMPLIANCE)["anonymiser"]["name"] == (
        "opencv-haar"
    )
    assert make_compliant(store, record, HaarDetector(), zones, "v1").get("skipped")
    assert not make_compliant(store, record, HaarDetector(), zones, "v2").get("skipped")


def test_a_truncated_drive_is_made_compliant_from_its_recovered_frames(tmp_path, make_log):
    """A log cut by a power loss is ingested as ``recovered`` (its complete chunks); the
    compliance step anonymises exactly the frames ingest located, instead of failing the
    whole hour on the broken tail."""
    import shutil

    from dataloop.fleet.simulator.faults import truncate

    store = LocalStore(tmp_path / "lake")
    log = tmp_path / "cut.mcap"
    shutil.copy(make_log(drive="cut", seconds=40.0), log)  # several chunks
    truncate(log, 0.8)
    upload_drive(store, log, vehicle="veh-1", drive="cut")
    for hour in arrival_hours(store, upload_days(store)):
        ingest_hour(store, hour)
    record = ledger.section(store, "veh-1", "cut", ledger.INGEST)
    assert record["status"] == "recovered", record["reasons"]
    result = make_compliant(store, record, HaarDetector(), [], "v1")
    assert 0 < result["frames"] == record["tables"]["frames"]["rows"]
