"""A corpus of bad uploads: each is quarantined with its reason, the rest of the hour
proceeds, and nothing already stored is lost or overwritten."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.PackedElementField_pb2 import PackedElementField
from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud
from mcap.reader import make_reader
from mcap.writer import CompressionType

from dataloop.fleet import contract, ros2_msgs
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.catalog import drives_overview
from dataloop.ingest.tables import read_table
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.pointers import read_json
from tests.helpers import (
    ForeignChannel,
    commit_raw,
    ingest_everything,
    ros2_payload,
    write_minimal_log,
)


def _flip_inside_first_chunk(path):
    data = bytearray(path.read_bytes())
    at = data.index(b"\xff\xd8\xff\xe0") + 100  # inside the first (uncompressed) JPEG
    data[at] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: keep if keep > 1 else int(len(data) * keep)])
    return path


def bad_uploads(tmp_path):
    """(drive id, path, commit kwargs, expected code) for every kind of bad upload."""

    def log(name, **kw):
        return write_minimal_log(tmp_path / f"{name}.mcap", drive=name, seconds=2.0, **kw)

    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(os.urandom(50_000))
    return [
        ("truncated-header", _truncate(log("truncated-header"), 5), {}, "truncated"),
        ("garbage", garbage, {}, "not_mcap"),
        (
            "bad-crc",
            _flip_inside_first_chunk(log("bad-crc", compression=CompressionType.NONE)),
            {},
            "crc_mismatch",
        ),
        ("checksum", log("checksum"), {"sha256": "0" * 64}, "checksum_mismatch"),
        ("size", log("size"), {"size": 12}, "checksum_mismatch"),
        (
            "undecodable-imu",
            log("undecodable-imu", raw_messages=[(contract.IMU.topic, b"\x0a\x10abc")]),
            {},
            "undecodable_message",
        ),
        ("wrong-identity", log("someone-else"), {}, "identity_mismatch"),
    ]


def test_each_bad_upload_is_quarantined_with_its_reason(store, tmp_path, make_log):
    good = make_log(vehicle="veh-1", drive="good")
    upload_drive(store, good, vehicle="veh-1")
    corpus = bad_uploads(tmp_path)
    for drive, path, kwargs, _ in corpus:
        commit_raw(store, path, vehicle="veh-1", drive=drive, **kwargs)
    raw_before = {o.key: store.get(o.key) for o in store.list("raw/")}

    reports = ingest_everything(store)

    status = {d["drive"]: d for r in reports.values() for d in r.drives}
    assert status["good"]["status"] == "ingested", "the rest of the hour proceeds"
    for drive, _, _, code in corpus:
        record = status[drive]
        assert record["status"] == "quarantined", drive
        assert record["reasons"][0]["code"] == code, (drive, record["reasons"])
        assert record["reasons"][0]["detail"]
        q = read_json(store, L.quarantine_key(record["manifest_key"]))
        assert q["reasons"][0]["code"] == code and q["log_key"] == record["log_key"]
        assert not list(store.list(f"tables/imu/vehicle=veh-1/drive={drive}/"))
    # Nothing is lost: every raw byte is still there, unchanged.
    assert {o.key: store.get(o.key) for o in store.list("raw/")} == raw_before
    overview = {r["drive"]: r for r in drives_overview(store)}
    assert overview["bad-crc"]["reasons"][0]["code"] == "crc_mismatch"
    # A mapped payload that does not decode names its topic and where the message lies.
    detail = status["undecodable-imu"]["reasons"][0]["detail"]
    assert re.search(r"topic '/imu': message at byte \d+ of the zstd chunk at byte \d+", detail)


def test_channels_outside_the_contract_are_kept_and_listed(store, tmp_path):
    """A contract drive that also records what real vehicles do (a ROS 2 /tf, a JSON
    /diagnostics, a lidar, a second camera) ingests: the /tf, the lidar and the second camera
    land in their tables by type; each channel no adapter maps is listed with its schema,
    encodings and message count; everything stays in the raw log as recorded."""
    lidar = PackedElementField(name="x", offset=0, type=PackedElementField.FLOAT32)
    tf = {
        "transforms": [
            {
                "header": {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "base_link"},
                "child_frame_id": frame,
                "transform": {
                    "translation": {"x": 1.5, "y": 0.0, "z": 1.2},
                    "rotation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
                },
            }
            for frame in ("camera_front", "lidar_top")
        ]
    }
    foreign = [
        ForeignChannel(
            "/tf",
            "tf2_msgs/msg/TFMessage",
            "ros2msg",
            "cdr",
            ros2_payload("tf2_msgs/msg/TFMessage", tf),
            schema_data=ros2_msgs.definition("tf2_msgs/msg/TFMessage").encode(),
        ),
        ForeignChannel("/diagnostics", "Diag", "jsonschema", "json", b'{"level": 0}', messages=5),
        ForeignChannel(
            "/lidar/top",
            "foxglove.PointCloud",
            "protobuf",
            "protobuf",
            PointCloud(fields=[lidar], point_stride=4, data=b"\0" * 40).SerializeToString(),
            messages=2,
        ),
    ]
    calibration = CameraCalibration(frame_id="cam", width=320, height=192, K=[400.0] + [0] * 8)
    foreign.append(
        ForeignChannel(
            "/camera/rear/calibration",
            "foxglove.CameraCalibration",
            "protobuf",
            "protobuf",
            calibration.SerializeToString(),
            messages=1,
        )
    )
    rear = ("/camera/rear/image", CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xd9"))
    path = write_minimal_log(
        tmp_path / "mixed.mcap", drive="mixed", seconds=2.0, foreign=foreign, extra_channel=rear
    )
    commit_raw(store, path, vehicle="veh-1", drive="mixed")
    raw = {o.key: store.get(o.key) for o in store.list("raw/")}

    (record,) = [d for r in ingest_everything(store).values() for d in r.drives]

    assert record["status"] == "ingested", record["reasons"]
    assert record["unmapped_topics"] == [
        {
            "topic": "/diagnostics",
            "schema": "Diag",
            "schema_encoding": "jsonschema",
            "message_encoding": "json",
            "messages": 5,
        },
    ]
    assert record["tables"]["imu"]["rows"] == 200 and record["tables"]["frames"]["rows"] == 21
    frames = read_table(store, record["tables"]["frames"]["key"])
    assert Counter(frames["camera"].to_pylist()) == {"front": 20, "rear": 1}
    transforms = read_table(store, record["tables"]["transforms"]["key"]).to_pylist()
    assert len(transforms) == 6  # 3 messages of 2 transforms
    assert {(r["parent_frame"], r["child_frame"]) for r in transforms} == {
        ("base_link", "camera_front"),
        ("base_link", "lidar_top"),
    }
    assert transforms[0]["x"] == 1.5 and transforms[0]["qw"] == 1.0
    (cal,) = read_table(store, record["tables"]["calibrations"]["key"]).to_pylist()
    assert (cal["camera"], cal["width"], cal["k"][0]) == ("rear", 320, 400.0)
    scans = read_table(store, record["tables"]["lidar_scans"]["key"]).to_pylist()
    assert [(s["sensor"], s["points"], s["point_step"]) for s in scans] == [("top", 10, 4)] * 2
    assert scans[0]["range_max_m"] is None  # x only: no range without y and z
    assert {o.key: store.get(o.key) for o in store.list("raw/")} == raw
    with store.open(record["log_key"]) as f:  # every channel is still readable as recorded
        topics = Counter(c.topic for _, c, _ in make_reader(f).iter_messages())
    assert topics["/tf"] == 3 and topics["/diagnostics"] == 5 and topics["/lidar/top"] == 2


def test_truncated_log_is_recovered_and_says_so(store, tmp_path):
    # Small chunks, so that cutting the file leaves several complete ones.
    full = write_minimal_log(tmp_path / "full.mcap", drive="cut", seconds=8.0, chunk_size=32_000)
    path = _truncate(full, 0.6)
    commit_raw(store, path, vehicle="veh-1", drive="cut")
    record = next(d for r in ingest_everything(store).values() for d in r.drives)
    assert record["status"] == "recovered"
    assert record["reasons"][0]["code"] == "truncated"
    assert "without a complete footer" in record["reasons"][0]["detail"]
    assert 0 < record["tables"]["imu"]["rows"] < 800


@pytest.mark.parametrize(
    "manifest_key",
    [
        "raw/date={day}/vehicle=../x.manifest.json",
        "raw/date={day}/vehicle=veh 1/d.manifest.json",
        "raw/date={day}/stray.manifest.json",
    ],
)
def test_hostile_keys_are_quarantined_without_escaping(store, manifest_key):
    day = datetime.now(UTC).date().isoformat()
    key = manifest_key.format(day=day)
    store.put(key, b"{}")
    record = next(d for r in ingest_everything(store).values() for d in r.drives)
    assert record["status"] == "quarantined"
    assert record["reasons"][0]["code"] in ("invalid_id", "invalid_manifest")
    q_key = L.quarantine_key(key)
    assert q_key.startswith("quarantine/") and ".." not in q_key.split("/")
    assert read_json(store, q_key)["manifest_key"] == key
    assert list(store.list(L.LEDGER_DRIVES)) == [] and list(store.list(L.LEDGER_HOURS)) == []


def test_manifest_claiming_an_escaping_drive_id_is_quarantined(store, tmp_path):
    path = write_minimal_log(tmp_path / "x.mcap", drive="x")
    keys = commit_raw(store, path, vehicle="veh-1", drive="x")
    hostile = store.get(keys.manifest).replace(b'"drive": "x"', b'"drive": "../x"')
    store.put(keys.manifest.replace("/x.manifest", "/y.manifest"), hostile)
    status = {d["manifest_key"]: d for r in ingest_everything(store).values() for d in r.drives}
    y = status[keys.manifest.replace("/x.manifest", "/y.manifest")]
    assert y["status"] == "quarantined" and y["reasons"][0]["code"] == "invalid_manifest"
    assert status[keys.manifest]["status"] == "ingested"


@pytest.mark.parametrize("seed,code", [(1, "duplicate"), (2, "conflict")])
def test_duplicate_and_conflicting_uploads_are_quarantined(store, make_log, seed, code):
    now = datetime.now(UTC)
    # Uploaded yesterday (its key's day), then the same drive id again today, past the
    # uploader's own check: the same bytes (duplicate) or other bytes (conflict).
    original = upload_drive(
        store, make_log(drive="drive-1", seed=1), vehicle="veh-1", now=now - timedelta(days=1)
    )
    ingest_everything(store)
    tables_before = {o.key: o.etag for o in store.list("tables/")}
    again = commit_raw(
        store, make_log(drive="drive-1", seed=seed), vehicle="veh-1", drive="drive-1"
    )
    ingest_everything(store)
    quarantined = read_json(store, L.quarantine_key(again.manifest))
    assert quarantined["reasons"][0]["code"] == code
    assert quarantined["original"] == original.manifest_key
    record = ledger.section(store, "veh-1", "drive-1", ledger.INGEST)
    assert record["manifest_key"] == original.manifest_key and record["status"] == "ingested"
    assert {o.key: o.etag for o in store.list("tables/")} == tables_before
