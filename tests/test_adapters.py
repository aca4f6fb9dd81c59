"""Bring-your-own logs (#20): adapters declared as YAML decode what another ecosystem's own
writer recorded (mcap-ros2-support's writer; Foxglove JSON), by type whatever the topic, a
fleet's custom messages with no Python, and bad adapters are errors naming file and line."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from mcap.writer import CompressionType, IndexType
from mcap.writer import Writer as McapWriter
from mcap_ros2.writer import Writer as Ros2Writer

from dataloop.fleet import contract, ros2_msgs
from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.ingest.adapters import adapter_files, load_adapters
from dataloop.ingest.decode import DecodeError, decode_log
from dataloop.ingest.frames import iter_frames
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_bytes
from dataloop.lake.local import LocalStore
from dataloop.rules import RulesError
from tests.helpers import ForeignChannel, ros2_payload, write_minimal_log

T0 = 1_780_000_000 * 10**9


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 16), (90, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()
POINTS = struct.pack("<12f", 3.0, 4.0, 0.0, 10.0, 0.0, 6.0, 8.0, 30.0, 1.0, 2.0, 2.0, 20.0)
"""Three lidar points (x, y, z, intensity): ranges 5, 10 and 3 m."""

VEHICLE_REPORT = """\
float32 speed_kph
float32 steering_deg
uint8 throttle_pct
uint8 brake_pct
float32 yaw_rate_dps
uint8 gear
uint8 GEAR_PARK=1
uint8 GEAR_DRIVE=4
"""
DETECTIONS = """\
acme_msgs/Detection[] detections
================================================================================
MSG: acme_msgs/Detection
uint32 track
string label
geometry_msgs/Point center
float64 length
float64 width
================================================================================
MSG: geometry_msgs/Point
float64 x
float64 y
float64 z
"""
ACME = """\
# A fleet's own messages: YAML only.
adapters:
  - schema: acme_msgs/msg/VehicleReport
    encodings: [cdr]
    table: vehicle_state
    columns:
      speed_mps: {path: speed_kph, unit: km/h}
      steering_angle_rad: {path: steering_deg, unit: deg}
      accelerator: {path: throttle_pct, unit: percent}
      brake: {path: brake_pct, unit: percent}
      yaw_rate_radps: {path: yaw_rate_dps, unit: deg/s}
      gear: {path: gear, enum: {1: park, 4: drive}}
      turn_signal: {const: "off"}
  - schema: acme_msgs/msg/Detections
    encodings: [cdr]
    table: objects
    rows: detections
    columns:
      object_id: track
      object_class: label
      x: center.x
      y: center.y
      length: length
      width: width
      confidence: {const: 1.0}
"""


def _rules(tmp_path: Path, extra: dict[str, str]) -> dict[Path, bytes | None]:
    folder = tmp_path / "adapters"
    folder.mkdir(exist_ok=True)
    for name, text in extra.items():
        (folder / name).write_text(text)
    return {p: None for p in [*adapter_files(), *sorted(folder.glob("*.yaml"))]}


def _ros2_drive(path: Path, seconds: float = 2.0) -> Path:
    """A drive as a ROS 2 vehicle records it: standard types on Autoware-style topics, two
    cameras, and the fleet's own vehicle report and detections."""
    with path.open("wb") as f:
        w = Ros2Writer(f)
        s = {
            name: w.register_msgdef(name, ros2_msgs.definition(name))
            for name in (
                "sensor_msgs/msg/Imu",
                "sensor_msgs/msg/NavSatFix",
                "sensor_msgs/msg/CompressedImage",
                "sensor_msgs/msg/PointCloud2",
                "sensor_msgs/msg/CameraInfo",
            )
        }
        report = w.register_msgdef("acme_msgs/msg/VehicleReport", VEHICLE_REPORT)
        detections = w.register_msgdef("acme_msgs/msg/Detections", DETECTIONS)
        for k in range(int(seconds * 100)):
            t = T0 + k * 10_000_000
            header = {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}, "frame_id": "imu"}
            w.write_message(
                "/sensing/imu/imu_data",
                s["sensor_msgs/msg/Imu"],
                {
                    "header": header,
                    "linear_acceleration": {"x": 0.5, "y": 0.0, "z": 9.81},
                    "angular_velocity": {"x": 0.0, "y": 0.0, "z": 0.01 * k},
                },
                t,
            )
            if k % 2 == 0:
                report_msg = {"speed_kph": 36.0, "steering_deg": 5.0, "throttle_pct": 20}
                report_msg |= {"brake_pct": 0, "yaw_rate_dps": 1.0, "gear": 4}
                w.write_message("/vehicle/status/report", report, report_msg, t)
            if k % 10 == 0:
                fix = {"header": header, "latitude": 48.1, "longitude": 11.5, "altitude": 520.0}
                fix["position_covariance"] = [4.0, 0, 0, 0, 9.0, 0, 0, 0, 16.0]
                w.write_message("/sensing/gnss/fix", s["sensor_msgs/msg/NavSatFix"], fix, t)
                info = {
                    "header": header,
                    "height": 16,
                    "width": 32,
                    "distortion_model": "plumb_bob",
                }
                info |= {"d": [0.1, -0.05, 0, 0, 0], "k": [500.0, 0, 16, 0, 500.0, 8, 0, 0, 1]}
                topic = "/sensing/camera/front/camera_info"
                w.write_message(topic, s["sensor_msgs/msg/CameraInfo"], info, t)
                for cam in ("front", "rear_left"):
                    image = {"header": header, "format": "jpeg", "data": JPEG}
                    topic = f"/sensing/camera/{cam}/image_raw/compressed"
                    w.write_message(topic, s["sensor_msgs/msg/CompressedImage"], image, t)
                fields = [
                    {"name": n, "offset": 4 * i, "datatype": 7, "count": 1}
                    for i, n in enumerate(("x", "y", "z", "intensity"))
                ]
                cloud = {"header": header, "height": 1, "width": 3, "fields": fields}
                cloud |= {"is_bigendian": False, "point_step": 16, "row_step": 48}
                cloud |= {"data": POINTS, "is_dense": True}
                w.write_message(
                    "/sensing/lidar/top/pointcloud", s["sensor_msgs/msg/PointCloud2"], cloud, t
                )
                swapped = struct.pack(">12f", *struct.unpack("<12f", POINTS))  # same points
                cloud |= {"is_bigendian": True, "data": swapped}
                w.write_message(
                    "/sensing/lidar/rear/pointcloud", s["sensor_msgs/msg/PointCloud2"], cloud, t
                )
                det = {"track": 7, "label": "car", "center": {"x": 20.0, "y": 1.0, "z": 0.0}}
                det |= {"length": 4.5, "width": 1.8}
                w.write_message("/perception/detections", detections, {"detections": [det]}, t)
        w.finish()
    return path


def test_a_ros2_drive_ingests_by_type_with_a_yaml_adapter_for_its_own_messages(tmp_path):
    adapters = load_adapters(_rules(tmp_path, {"acme.yaml": ACME}))
    path = _ros2_drive(tmp_path / "ros2.mcap")
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-ros", drive="d1", adapters=adapters)
    assert log.unmapped == []
    imu = log.tables["imu"]
    assert imu.num_rows == 200 and imu["accel_z"][0].as_py() == 9.81
    assert imu["gyro_z"][100].as_py() == pytest.approx(1.0)
    assert imu["t"][1].value - imu["t"][0].value == 10_000_000
    gnss = log.tables["gnss"].to_pylist()
    assert len(gnss) == 20 and gnss[0]["latitude"] == 48.1
    assert gnss[0]["horizontal_sigma_m"] == 3.0  # sqrt(max(4, 9))
    state = log.tables["vehicle_state"].to_pylist()[0]
    assert state["speed_mps"] == pytest.approx(10.0)  # 36 km/h
    assert state["steering_angle_rad"] == pytest.approx(math.radians(5.0))
    assert state["accelerator"] == pytest.approx(0.2) and state["brake"] == 0.0
    assert (state["gear"], state["turn_signal"]) == ("drive", "off")
    objects = log.tables["objects"].to_pylist()
    assert len(objects) == 20 and objects[0]["object_class"] == "car"
    assert (objects[0]["x"], objects[0]["confidence"]) == (20.0, 1.0)
    assert objects[0]["vx"] is None  # not in the fleet's message: null, not a made-up 0
    frames = log.tables["frames"]
    assert sorted(set(frames["camera"].to_pylist())) == ["front", "rear_left"]
    assert frames.num_rows == 40 and all(frames["jpeg_valid"].to_pylist())
    assert set(frames["width"].to_pylist()) == {32}

    calibration = log.tables["calibrations"].to_pylist()
    assert len(calibration) == 20 and calibration[0]["camera"] == "front"  # joins frames.camera
    assert calibration[0]["k"][0] == 500.0 and calibration[0]["d"] == [0.1, -0.05, 0, 0, 0]
    assert (calibration[0]["width"], calibration[0]["distortion_model"]) == (32, "plumb_bob")
    every = log.tables["lidar_scans"].to_pylist()
    scans = [r for r in every if r["sensor"] == "top"]
    assert len(scans) == 20 and scans[0]["points"] == 3
    assert (scans[0]["range_min_m"], scans[0]["range_max_m"]) == (3.0, 10.0)
    assert scans[0]["range_mean_m"] == pytest.approx(6.0) and scans[0]["intensity_max"] == 30.0
    rear = [r for r in every if r["sensor"] == "rear"]  # a big-endian cloud: the same numbers
    stats = ("points", "range_min_m", "range_max_m", "range_mean_m", "intensity_max")
    assert len(rear) == 20 and [rear[0][k] for k in stats] == [scans[0][k] for k in stats]

    # A frame and a scan read back from the raw log by their location alone (no CDR).
    store = LocalStore(tmp_path / "lake")
    store.put("raw/ros2.mcap", path.read_bytes())
    rows = frames.sort_by("seq").to_pylist()
    assert [jpeg for _, jpeg in iter_frames(store, "raw/ros2.mcap", rows)] == [JPEG] * 40
    assert [p for _, p in iter_frames(store, "raw/ros2.mcap", scans)] == [POINTS] * 20


def test_foxglove_json_channels_decode_like_protobuf_ones(tmp_path):
    """A contract drive whose camera and GNSS are recorded as Foxglove JSON (bytes as base64)
    ingests with the same values, and the frame reads back as the JPEG it was."""
    fix = {
        "timestamp": {"sec": 0, "nsec": 0},
        "frame_id": "gnss",
        "latitude": 52.5,
        "longitude": 13.4,
        "altitude": 34.0,
        "position_covariance": [1.0, 0, 0, 0, 0.25, 0, 0, 0, 1.0],
        "position_covariance_type": 2,
    }
    image = {"timestamp": {"sec": 0, "nsec": 0}, "frame_id": "cam", "format": "jpeg"}
    image["data"] = base64.b64encode(JPEG).decode()
    foreign = [
        ForeignChannel("/gps", "foxglove.LocationFix", "jsonschema", "json",
                       json.dumps(fix).encode(), 5),
        ForeignChannel("/cam/front_wide", "foxglove.CompressedImage", "jsonschema", "json",
                       json.dumps(image).encode(), 4),
    ]  # fmt: skip
    channels = [c for c in contract.CHANNELS if c not in (contract.GNSS, contract.CAMERA)]
    path = write_minimal_log(tmp_path / "json.mcap", channels=channels, foreign=foreign)
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-1", drive="drive-1")
    gnss = log.tables["gnss"].to_pylist()
    assert len(gnss) == 5 and gnss[0]["latitude"] == 52.5 and gnss[0]["horizontal_sigma_m"] == 1.0
    frames = log.tables["frames"].to_pylist()
    assert len(frames) == 4 and {f["camera"] for f in frames} == {"cam_front_wide"}
    assert frames[0]["data_encoding"] == "base64" and frames[0]["jpeg_bytes"] == len(JPEG)
    store = LocalStore(tmp_path / "lake")
    store.put("raw/json.mcap", path.read_bytes())
    assert [j for _, j in iter_frames(store, "raw/json.mcap", frames)] == [JPEG] * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ACME.replace("path: speed_kph, unit: km/h", "path: speed_kph, unit: kph"),
         r"acme\.yaml, line 7: adapters\.0\.columns\.speed_mps\.unit: 'kph' is not allowed; "
         r"allowed: m, cm, mm, km, m/s, km/h"),
        (ACME.replace("table: vehicle_state", "table: vehicle_stat"),
         r"acme\.yaml, line 3: adapters\.0: table 'vehicle_stat' is not allowed; "
         r"allowed: frames, gnss"),
        (ACME.replace("brake: {path", "brakes: {path"),
         r"acme\.yaml, line 3: adapters\.0: table vehicle_state: unknown column 'brakes'; "
         r"allowed: speed_mps"),
        (ACME.replace("encodings: [cdr]", "encodings: [cbor]", 1),
         r"acme\.yaml, line 4: adapters\.0\.encodings\.0: 'cbor' is not allowed; "
         r"allowed: protobuf, json, cdr, ros1"),
        ("adapters:\n  - schema: sensor_msgs/msg/Imu\n    encodings: [cdr]\n    table: imu\n"
         "    topic: /imu/raw\n    columns:\n      accel_x: linear_acceleraton.x\n",
         r"acme\.yaml, line 7: accel_x: field path 'linear_acceleraton\.x': no field "
         r"'linear_acceleraton' in sensor_msgs/msg/Imu \(did you mean 'linear_acceleration'\?\)"),
        ("adapters:\n  - schema: dataloop.Imu\n    encodings: [protobuf]\n    table: imu\n"
         "    columns: {accel_x: accel_x}\n",
         r"acme\.yaml, line 2: dataloop\.Imu \(protobuf\) is also mapped at "
         r"assets/ingest/adapters/dataloop\.yaml, line 5"),
    ],
    ids=["unit", "table", "column", "encoding", "known-path", "duplicate"],
)  # fmt: skip
def test_a_bad_adapter_names_its_file_line_and_the_allowed_values(tmp_path, text, expected):
    with pytest.raises(RulesError, match=expected):
        load_adapters(_rules(tmp_path, {"acme.yaml": text}))


def test_a_custom_path_the_log_lacks_quarantines_with_the_adapter_named(tmp_path):
    """A fleet message's paths can only be checked against the definition its log embeds:
    a misspelled one sets the drive aside as adapter_mismatch, naming the column's line."""
    adapters = load_adapters(
        _rules(tmp_path, {"acme.yaml": ACME.replace("speed_kph,", "speed_kmh,")})
    )
    path = _ros2_drive(tmp_path / "ros2.mcap", seconds=0.2)
    with path.open("rb") as f, pytest.raises(DecodeError) as err:
        decode_log(f, vehicle="veh-ros", drive="d1", adapters=adapters)
    assert err.value.code == "adapter_mismatch"
    assert "acme.yaml, line 7: speed_mps: field path 'speed_kmh'" in err.value.detail
    assert "did you mean 'speed_kph'" in err.value.detail


def test_a_garbage_ros2_payload_names_the_topic():
    out = io.BytesIO()
    mcap = McapWriter(out)
    mcap.start("ros2", "test")
    imu = mcap.register_schema("sensor_msgs/msg/Imu", "ros2msg",
                               ros2_msgs.definition("sensor_msgs/msg/Imu").encode())  # fmt: skip
    channel = mcap.register_channel("/imu", "cdr", imu)
    mcap.add_message(channel, T0, b"\x00\x01\x00\x00\xff", T0)  # a header, then nothing
    mcap.finish()
    with pytest.raises(DecodeError) as err:
        decode_log(io.BytesIO(out.getvalue()), vehicle="v", drive="d")
    assert err.value.code == "undecodable_message"
    assert "topic '/imu'" in err.value.detail and "sensor_msgs/msg/Imu (cdr)" in err.value.detail


def test_suggest_drafts_an_adapter_for_what_no_adapter_maps(tmp_path):
    """`adapters suggest` lists each unmapped schema's fields and drafts an adapter that,
    once saved, loads and maps the channel (here: the fleet's own vehicle report)."""
    from dataloop.ingest.suggest import suggest

    path = _ros2_drive(tmp_path / "ros2.mcap", seconds=0.2)
    draft = suggest(path)
    assert "acme_msgs/msg/VehicleReport (topic /vehicle/status/report)" in draft
    assert "#   speed_kph: number" in draft and "#   center.x: number" in draft
    assert "sensor_msgs" not in draft.split("#")[0]  # standard types are mapped already
    doc = yaml.safe_load(draft)
    report = next(a for a in doc["adapters"] if a["schema"] == "acme_msgs/msg/VehicleReport")
    assert report["table"] == "vehicle_state" and report["encodings"] == ["cdr"]
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "draft.yaml").write_text(yaml.safe_dump({"adapters": [report]}))
    adapters = load_adapters(
        {p: None for p in [*adapter_files(), tmp_path / "adapters/draft.yaml"]}
    )
    with path.open("rb") as f:
        log = decode_log(f, vehicle="v", drive="d", adapters=adapters)
    assert log.tables["vehicle_state"].num_rows > 0
    assert log.tables["objects"].num_rows == 0  # its detections stay unmapped: listed
    assert "acme_msgs/msg/Detections" in {c["schema"] for c in log.unmapped}
    assert adapters.find("/vehicle/status/report", "acme_msgs/msg/VehicleReport", "cdr")
    detections = next(a for a in doc["adapters"] if a["schema"] == "acme_msgs/msg/Detections")
    assert detections["rows"] == "detections" and detections["table"] == "objects"
    assert detections["columns"]["length"] == "length" and detections["columns"]["width"] == "width"


def test_the_same_simulated_drive_recorded_as_ros2_gives_the_same_tables(tmp_path):
    """The simulated fleet records through mcap-ros2-support's writer with --log-format ros2;
    the same drive recorded both ways decodes to the same tables (floats to 1e-9 relative:
    the ROS 2 vehicle report is in km/h and steering-wheel degrees)."""
    from dataloop.fleet.simulator.config import SimConfig
    from dataloop.fleet.simulator.fleet import simulate_fleet

    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    tables = {}
    for fmt in ("protobuf", "ros2"):
        config = replace(SimConfig(log_format=fmt).without_faults(), camera_size=(96, 64))
        (report,) = simulate_fleet(
            vehicles=1, minutes=0.3, seed=4, out=tmp_path / fmt, start=start, config=config
        )
        path = Path(report.drives[0]["path"])
        with path.open("rb") as f:
            log = decode_log(f, vehicle=report.vehicle, drive=path.stem)
        assert log.unmapped == []
        tables[fmt] = log.tables
    located = {"chunk_offset", "chunk_length", "chunk_uncompressed_size", "message_offset"}
    located |= {"message_length", "data_offset", "data_length", "chunk_compression"}
    for name, pb in tables["protobuf"].items():
        ros = tables["ros2"][name]
        assert ros.num_rows == pb.num_rows > (0 if name != "events" else -1), name
        for column in pb.column_names:
            if column in located or (column == "sensor" and name in ("imu", "gnss")):
                continue  # where it lies; a sensor named after its topic (/imu, /sensing/imu/..)
            a, b = pb[column].to_pylist(), ros[column].to_pylist()
            if pb.schema.field(column).type in (pa.float64(), pa.float32()):
                np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=f"{name}.{column}")
            else:
                assert b == a, f"{name}.{column}"


def test_the_same_drive_recorded_both_ways_gives_the_same_verdicts_clips_and_dataset(tmp_path):
    """Taken through the whole hourly path (Dagster's ingest, quality, compliance and label
    assets), scenario mining and the dataset policy, the drive recorded as protobuf and as
    ROS 2 gets the same verdict, the same clips and the same dataset rows."""
    from dataloop.curation import datasets as D
    from dataloop.curation.scenarios import load_scenarios, mine_day, read_scenario_index
    from dataloop.fleet.simulator.config import SimConfig
    from tests.helpers import simulated_lake

    start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(minutes=9)
    seen = {}
    for fmt in ("protobuf", "ros2"):
        config = replace(
            SimConfig(log_format=fmt).without_faults(),
            camera_size=(96, 64),
            corner_cases_per_hour=dict.fromkeys(SimConfig().corner_cases_per_hour, 600.0),
        )
        store, reports, _, hours = simulated_lake(
            tmp_path / fmt, config, vehicles=1, minutes=0.5, seed=11, start=start
        )
        drives = [(r.vehicle, d["drive"]) for r in reports for d in r.drives]
        verdicts = [ledger.section(store, *k, ledger.VERDICT) for k in drives]
        days = sorted({h[:10] for h in hours})
        for day in days:
            mine_day(store, day, load_scenarios())
        clips = read_scenario_index(store, days)
        manifest, _ = D.curate(clips, D.load_policy())
        seen[fmt] = (
            [(v["verdict"], sorted(f["expectation"] for f in v["failures"])) for v in verdicts],
            clips.drop_columns(["drive_version"]).to_pylist(),
            manifest.drop_columns(["drive_version"]).to_pylist(),
        )
    assert seen["protobuf"][1], "the corner cases make clips"
    assert seen["ros2"] == seen["protobuf"]


def _random_message(defs: dict, key: str, rng) -> dict:
    """A message of type ``key`` with random values in every field (arrays of 0-3)."""
    from dataloop.ingest.adapters.cdr import PRIMITIVES
    from dataloop.ingest.adapters.fields import ros_key

    def value(ftype: str):
        if ftype in ("float32", "float64"):
            return float(np.float32(rng.normal(0, 100))) if ftype == "float32" else rng.normal()
        if ftype == "bool":
            return bool(rng.integers(2))
        if ftype in PRIMITIVES:
            bits = {1: 7, 2: 15, 4: 31, 8: 62}[PRIMITIVES[ftype][1]]
            return int(rng.integers(0, 2**bits))
        if ftype.startswith("string"):
            return "".join(rng.choice(list("abcxyz_/"), int(rng.integers(0, 12))))
        return _random_message(defs, ros_key(ftype, key.split("/")[0]), rng)

    out = {}
    for name, ftype, array in defs[key]:
        if array is None:
            out[name] = value(ftype)
        elif ftype in ("uint8", "byte"):
            out[name] = rng.bytes(array if array >= 0 else int(rng.integers(0, 40)))
        else:
            out[name] = [value(ftype) for _ in range(array if array >= 0 else rng.integers(0, 4))]
    return out


def test_the_generated_cdr_reader_agrees_with_mcap_ros2_support():
    """Every built-in and simulated-fleet ROS 2 adapter, through the generated reader (its
    paths only) and through mcap-ros2-support's dynamic decoder: the same rows, for random
    messages (seed 11); and a big-endian payload, which the generated reader hands to the
    dynamic decoder."""
    from dataloop.ingest.adapters import installed
    from dataloop.ingest.adapters.codecs import codec
    from dataloop.ingest.adapters.extract import TableRows, bind
    from dataloop.ingest.adapters.fields import ros_definitions
    from dataloop.ingest.tables import SCHEMAS

    rng = np.random.default_rng(11)
    checked = 0
    for adapter in installed().get().adapters:
        if "cdr" not in adapter.encodings:
            continue
        text = ros2_msgs.definition(adapter.schema)
        found = codec("cdr", "ros2msg", adapter.schema, text.encode())
        fast, slow = bind(adapter, found, "/t", text), bind(adapter, found, "/t")
        # a generated reader each, but for a scan (it reads its point fields as messages)
        assert (fast.codec.parse is not slow.codec.parse) == (adapter.table != "lidar_scans")
        defs = ros_definitions(adapter.schema, text)
        pkg, *_, typ = adapter.schema.split("/")
        for k in range(25):
            message = _random_message(defs, f"{pkg}/{typ}", rng)
            if "pixel_encoding" in dict(adapter.columns):  # raw pixels fit their description
                w, h, pad = (int(v) for v in rng.integers(1, 5, 3))
                message |= {"encoding": "mono8", "width": w, "height": h, "step": w + pad}
                message["data"] = rng.bytes(h * (w + pad))
            payload = ros2_payload(adapter.schema, message)
            rows = []
            for binding in (fast, slow):
                table = TableRows([f.name for f in SCHEMAS[adapter.table]][2:])
                table.add(binding, memoryview(payload), T0 + k, T0 + k, (0, "", 0, 0, 0, 0))
                rows.append(table.cols)
            assert rows[0] == rows[1], adapter.schema
        checked += 1
    assert checked >= 10

    event = next(
        a for a in installed().get().adapters if a.schema == "dataloop_msgs/msg/DriveEvent"
    )
    text = ros2_msgs.definition(event.schema)
    binding = bind(event, codec("cdr", "ros2msg", event.schema, text.encode()), "/e", text)

    def string(s: str, at: int) -> bytes:  # aligned to 4 after the 4-byte header
        return b"\0" * ((4 - at) % 4) + struct.pack(">I", len(s) + 1) + s.encode() + b"\0"

    be = b"\x00\x00\x00\x00" + struct.pack(">iI", 5, 6)
    for s in ("base_link", "hard_brake", "decel 6 m/s^2"):
        be += string(s, len(be))
    assert binding.codec.parse(memoryview(be)) == {"type": "hard_brake", "detail": "decel 6 m/s^2"}


LAYOUTS = {
    "zstd-chunked": {},
    "lz4-small-chunks": {"compression": CompressionType.LZ4, "chunk_size": 4096},
    "uncompressed-chunks": {"compression": CompressionType.NONE},
    "unchunked": {"use_chunking": False},
    "no-summary": {
        "index_types": IndexType.NONE,
        "use_statistics": False,
        "use_summary_offsets": False,
        "repeat_channels": False,
        "repeat_schemas": False,
    },
    "no-indexes-data-crc": {"index_types": IndexType.NONE, "enable_data_crcs": True},
}


def test_every_mcap_layout_decodes_to_the_same_tables(tmp_path):
    """One drive written in each layout the MCAP specification allows (chunked or not; zstd,
    lz4 or none; with or without message and chunk indexes, statistics, summary; data CRCs):
    the same tables, and every frame reads back by its location."""
    located = {"chunk_offset", "chunk_length", "chunk_uncompressed_size", "chunk_compression"}
    located |= {"message_offset", "data_offset"}
    store = LocalStore(tmp_path / "lake")
    reference = None
    compressions, sizes = set(), set()
    for name, options in LAYOUTS.items():
        path = write_minimal_log(tmp_path / f"{name}.mcap", seconds=2.0, t0=T0, **options)
        with path.open("rb") as f:
            log = decode_log(f, vehicle="veh-1", drive="drive-1")
        assert not log.truncated and log.unmapped == [], name
        tables = {
            t: v.drop_columns([c for c in v.column_names if c in located])
            for t, v in log.tables.items()
        }
        if reference is None:
            reference = tables
        assert tables == reference, name
        store.put(f"raw/{name}.mcap", path.read_bytes())
        frames = log.tables["frames"].to_pylist()
        images = [jpeg for _, jpeg in iter_frames(store, f"raw/{name}.mcap", frames)]
        assert len(images) == 20
        assert [sha256_bytes(j) for j in images] == [f["jpeg_sha256"] for f in frames]
        compressions |= {f["chunk_compression"] for f in frames}
        sizes.add(path.stat().st_size)
    assert compressions == {"zstd", "lz4", ""} and len(sizes) == len(LAYOUTS)  # really differ


ROS1_HEADER = "uint32 seq\ntime stamp\nstring frame_id"
ROS1 = {
    "sensor_msgs/Imu": "Header header\ngeometry_msgs/Quaternion orientation\n"
    "float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n"
    "float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n"
    "float64[9] linear_acceleration_covariance",
    "sensor_msgs/NavSatFix": "Header header\nNavSatStatus status\nfloat64 latitude\n"
    "float64 longitude\nfloat64 altitude\nfloat64[9] position_covariance\n"
    "uint8 position_covariance_type",
    "sensor_msgs/CompressedImage": "Header header\nstring format\nuint8[] data",
    "acme_msgs/VehicleReport": VEHICLE_REPORT,
    "acme_msgs/Detections": DETECTIONS.split("=" * 80)[0].strip(),
}
ROS1_DEPS = {
    "std_msgs/Header": ROS1_HEADER,
    "geometry_msgs/Quaternion": "float64 x\nfloat64 y\nfloat64 z\nfloat64 w",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "sensor_msgs/NavSatStatus": "int8 status\nuint16 service",
    "acme_msgs/Detection": DETECTIONS.split("MSG: acme_msgs/Detection\n")[1].split("=")[0].strip(),
}


def _ros1_class(name: str):
    """A ROS 1 message class from its full text, as rosbag and mcap-ros1-support build it."""
    from mcap_ros1._vendor.genpy.dynamic import generate_dynamic

    sep = "\n" + "=" * 80 + "\n"
    text = ROS1[name] + "".join(f"{sep}MSG: {k}\n{v}" for k, v in ROS1_DEPS.items())
    return generate_dynamic(name, text)[name]


def test_a_ros1_drive_ingests_through_mcap_ros1_support(tmp_path):
    """A drive recorded with mcap-ros1-support's writer (ROS 1 types, ROS 1 header with a
    seq and a `time` stamp) decodes through the built-in ROS 1 adapters, the fleet's own
    messages through the same YAML adapter as its ROS 2 ones."""
    from mcap_ros1.writer import Writer as Ros1Writer

    acme = ACME.replace("encodings: [cdr]", "encodings: [cdr, ros1]")
    acme = acme.replace("acme_msgs/msg/", "acme_msgs/")  # ROS 1 names have no /msg/
    adapters = load_adapters(_rules(tmp_path, {"acme.yaml": acme}))
    cls = {name: _ros1_class(name) for name in ROS1}
    path = tmp_path / "ros1.mcap"
    with path.open("wb") as f:
        w = Ros1Writer(f)
        for k in range(100):
            t = T0 + k * 10_000_000
            imu = cls["sensor_msgs/Imu"]()
            imu.header.frame_id = "imu"
            imu.linear_acceleration.x, imu.linear_acceleration.z = 0.25, 9.81
            imu.angular_velocity.z = 0.5
            w.write_message("/imu/data", imu, t)
            if k % 10 == 0:
                fix = cls["sensor_msgs/NavSatFix"]()
                fix.latitude, fix.longitude = 37.4, -122.1
                fix.position_covariance = [0.25, 0, 0, 0, 1.0, 0, 0, 0, 4.0]
                w.write_message("/fix", fix, t)
                image = cls["sensor_msgs/CompressedImage"]()
                image.format, image.data = "jpeg", JPEG
                w.write_message("/usb_cam/image_raw/compressed", image, t)
                report = cls["acme_msgs/VehicleReport"]()
                report.speed_kph, report.gear = 72.0, 4
                w.write_message("/vehicle/report", report, t)
                detections = cls["acme_msgs/Detections"]()
                w.write_message("/detections", detections, t)
        w.finish()
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-ros1", drive="d1", adapters=adapters)
    assert log.unmapped == []
    imu = log.tables["imu"].to_pylist()
    assert len(imu) == 100 and (imu[0]["accel_x"], imu[0]["accel_z"], imu[0]["gyro_z"]) == (
        0.25,
        9.81,
        0.5,
    )
    gnss = log.tables["gnss"].to_pylist()
    assert len(gnss) == 10 and gnss[0]["latitude"] == 37.4 and gnss[0]["horizontal_sigma_m"] == 1.0
    state = log.tables["vehicle_state"].to_pylist()
    assert state[0]["speed_mps"] == pytest.approx(20.0) and state[0]["gear"] == "drive"
    frames = log.tables["frames"].to_pylist()
    assert {f["camera"] for f in frames} == {"usb_cam"} and len(frames) == 10
    store = LocalStore(tmp_path / "lake")
    store.put("raw/ros1.mcap", path.read_bytes())
    assert [j for _, j in iter_frames(store, "raw/ros1.mcap", frames)] == [JPEG] * 10


def test_a_cut_leaves_out_every_camera_and_position_it_cannot_anonymise():
    """An exported cut rewrites protobuf cameras (anonymised frames) and GNSS (public
    positions); a ROS 2 or JSON camera or fix is left out, never copied raw, and any other
    channel is copied."""
    from mcap.records import Channel, Schema

    from dataloop.fleet import schemas
    from dataloop.ingest.adapters import installed
    from dataloop.search.export import _role

    adapters = installed().get()

    def role(topic, name, encoding, data=b""):
        schema_encoding = {"protobuf": "protobuf", "cdr": "ros2msg", "json": "jsonschema"}
        schema = Schema(id=1, name=name, encoding=schema_encoding[encoding], data=data)
        channel = Channel(id=1, topic=topic, message_encoding=encoding, schema_id=1, metadata={})
        table, binding = _role(adapters, schema, channel)
        return table, binding is not None

    from mcap_protobuf.schema import build_file_descriptor_set

    image = build_file_descriptor_set(schemas.MESSAGE_CLASSES["foxglove.CompressedImage"])
    assert role("/camera/front/image", "foxglove.CompressedImage", "protobuf",
                image.SerializeToString()) == ("frames", True)  # fmt: skip
    ros2 = ros2_msgs.definition("sensor_msgs/msg/CompressedImage").encode()
    assert role("/cam/compressed", "sensor_msgs/msg/CompressedImage", "cdr", ros2) == (
        "frames",
        False,
    )
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    raw = build_file_descriptor_set(RawImage)
    assert role("/camera/left/image", "foxglove.RawImage", "protobuf",
                raw.SerializeToString()) == ("frames", False)  # fmt: skip
    ros2_raw = ros2_msgs.definition("sensor_msgs/msg/Image").encode()
    assert role("/cam/image_raw", "sensor_msgs/msg/Image", "cdr", ros2_raw) == ("frames", False)
    assert role("/gps", "foxglove.LocationFix", "json") == ("gnss", False)
    fix = ros2_msgs.definition("sensor_msgs/msg/NavSatFix").encode()
    assert role("/fix", "sensor_msgs/msg/NavSatFix", "cdr", fix) == ("gnss", False)
    imu = ros2_msgs.definition("sensor_msgs/msg/Imu").encode()
    assert role("/imu", "sensor_msgs/msg/Imu", "cdr", imu) == ("imu", False)  # copied as is
    assert role("/diag", "Diag", "json") == (None, False)


def test_a_ros2_array_that_claims_4_gb_is_refused_without_allocating_it():
    """A CompressedImage whose byte array claims 4 GB (the length field of a 60-byte
    payload): undecodable, named, and nothing near that size is allocated."""
    import tracemalloc

    text = ros2_msgs.definition("sensor_msgs/msg/CompressedImage")
    good = ros2_payload(
        "sensor_msgs/msg/CompressedImage",
        {
            "header": {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "cam"},
            "format": "jpeg",
            "data": b"x" * 8,
        },
    )
    hostile = good[:-12] + struct.pack("<I", 0xFFFF_FFF0) + good[-8:]  # the data's length
    out = io.BytesIO()
    mcap = McapWriter(out)
    mcap.start("ros2", "test")
    schema = mcap.register_schema("sensor_msgs/msg/CompressedImage", "ros2msg", text.encode())
    channel = mcap.register_channel("/camera/front/image_raw/compressed", "cdr", schema)
    mcap.add_message(channel, T0, hostile, T0)
    mcap.finish()
    tracemalloc.start()
    with pytest.raises(DecodeError) as err:
        decode_log(io.BytesIO(out.getvalue()), vehicle="v", drive="d")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err.value.code == "undecodable_message" and "array past the end" in err.value.detail
    assert peak < 64 * 1024 * 1024


def _one_channel_log(topic, name, schema_encoding, encoding, definition: bytes, payload: bytes):
    out = io.BytesIO()
    mcap = McapWriter(out)
    mcap.start("test", "test")
    channel = mcap.register_channel(
        topic, encoding, mcap.register_schema(name, schema_encoding, definition)
    )
    mcap.add_message(channel, T0, payload, T0)
    mcap.finish()
    return io.BytesIO(out.getvalue())


@pytest.mark.parametrize(
    ("case", "code"),
    [("self-containing", "undecodable"), ("xcdr2", "undecodable_message"),
     ("latitude-text", "undecodable_message"), ("negative-variance", None)],
)  # fmt: skip
def test_hostile_schemas_and_values_quarantine_with_a_reason(case, code):
    """A schema that contains itself, an XCDR2 payload and a value that is not of its
    column's type set the drive aside with a reason (they raised through the hour before); a
    negative variance gives no sigma rather than a complex number."""
    imu = ros2_msgs.definition("sensor_msgs/msg/Imu")
    payload = ros2_payload("sensor_msgs/msg/Imu", {})
    fix = {"latitude": 1.0, "longitude": 2.0, "altitude": 3.0, "position_covariance": [0.0] * 9}
    if case == "self-containing":
        text = imu.replace("string frame_id", "string frame_id\nstd_msgs/Header loop")
        log = _one_channel_log(
            "/imu", "sensor_msgs/msg/Imu", "ros2msg", "cdr", text.encode(), payload
        )
    elif case == "xcdr2":
        log = _one_channel_log("/imu", "sensor_msgs/msg/Imu", "ros2msg", "cdr", imu.encode(),
                               b"\x00\x07" + payload[2:])  # fmt: skip
    else:
        fix |= {"latitude": "abc"} if case == "latitude-text" else {}
        fix["position_covariance"] = (
            [-4.0] + [0.0] * 8 if case == "negative-variance" else [0.0] * 9
        )
        log = _one_channel_log("/gps", "foxglove.LocationFix", "jsonschema", "json", b"",
                               json.dumps(fix).encode())  # fmt: skip
    if code is None:  # decodes (ingest requires no table): the larger variance, 0, counts
        gnss = decode_log(log, vehicle="v", drive="d").tables["gnss"]
        assert gnss.num_rows == 1 and gnss["horizontal_sigma_m"].to_pylist() == [0.0]
        return
    with pytest.raises(DecodeError) as err:
        decode_log(log, vehicle="v", drive="d")
    assert err.value.code.startswith(code), err.value.detail


def test_a_negative_variance_is_no_sigma():
    from dataloop.ingest.adapters.extract import REDUCERS

    assert math.isnan(REDUCERS["sigma_h"]([-4.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0]))
    assert REDUCERS["sigma_h"]([4.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]) == 2.0


def test_schema_less_json_rows_and_blob_adapters_are_checked(tmp_path):
    """Rows of a JSON channel without a schema decode (nothing to check them against), and a
    frames adapter without its image data is refused when the rules load."""
    rows = """adapters:
  - schema: acme.Objects
    encodings: [json]
    table: objects
    rows: objects
    columns: {object_id: id, x: x}
"""
    adapters = load_adapters(_rules(tmp_path, {"acme.yaml": rows}))
    payload = json.dumps({"objects": [{"id": 1, "x": 2.5}, {"id": 2, "x": 3.5}]}).encode()
    log = _one_channel_log("/objects", "acme.Objects", "jsonschema", "json", b"", payload)
    objects = decode_log(log, vehicle="v", drive="d", adapters=adapters).tables["objects"]
    assert objects["x"].to_pylist() == [2.5, 3.5] and objects["object_id"].to_pylist() == [1, 2]
    no_image = "adapters:\n  - schema: acme.Cam\n    encodings: [json]\n    table: frames\n"
    no_image += "    columns: {format: fmt}\n"
    with pytest.raises(RulesError, match="table frames: an adapter gives data; missing: data"):
        load_adapters(_rules(tmp_path, {"acme.yaml": no_image}))


def _random_protobuf(msg, rng, depth: int = 0) -> None:
    """Random values in every field of a protobuf message (unknown enum numbers too)."""
    from google.protobuf.descriptor import FieldDescriptor as F

    def value(f):
        if f.type == F.TYPE_MESSAGE:
            return None
        if f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return float(np.float32(rng.normal(0, 100)))
        if f.type == F.TYPE_BOOL:
            return bool(rng.integers(0, 2))
        if f.type == F.TYPE_STRING:
            return "".join(rng.choice(list("abc_é"), rng.integers(0, 6)))
        if f.type == F.TYPE_BYTES:
            return rng.bytes(int(rng.integers(0, 2000)))
        if f.type == F.TYPE_ENUM:
            return int(rng.choice([*(v.number for v in f.enum_type.values), 99]))
        unsigned = f.type in (F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_FIXED32, F.TYPE_FIXED64)
        return int(rng.integers(0 if unsigned else -1000, 1000))

    for f in msg.DESCRIPTOR.fields:
        repeated = f.is_repeated
        if f.type == F.TYPE_MESSAGE:
            if depth > 3:
                continue
            for _ in range(int(rng.integers(0, 4)) if repeated else 1):
                _random_protobuf(getattr(msg, f.name).add() if repeated else
                                 getattr(msg, f.name), rng, depth + 1)  # fmt: skip
        elif repeated:
            getattr(msg, f.name).extend(value(f) for _ in range(int(rng.choice([0, 9, 4]))))
        elif rng.random() < 0.9:  # else unset: its default
            setattr(msg, f.name, value(f))


CUSTOM_PROTOBUF = """\
adapters:
  - schema: dataloop.VehicleState
    encodings: [protobuf]
    topic: /custom/state
    table: vehicle_state
    time: publish_time
    columns:
      speed_mps: {path: speed_mps, unit: km/h}
      steering_angle_rad: {path: steering_angle_rad, unit: deg, scale: 0.5, offset: 0.25}
      accelerator: {path: accelerator, scale: 2.0}
      brake: {const: 0.5}
      gear: {path: gear, enum: {0: unknown, 4: drive}}
      turn_signal: {path: turn_signal, enum: names}
  - schema: dataloop.PerceptionObjects
    encodings: [protobuf]
    topic: /custom/objects
    table: objects
    rows: objects
    columns:
      object_id: id
      object_class: {path: object_class, enum: {1: car}}
      x: {path: x, unit: km/h}
      confidence: {const: 1.0}
  - schema: foxglove.LocationFix
    encodings: [protobuf]
    topic: /custom/fix
    table: gnss
    time: {path: timestamp}
    columns:
      latitude: {path: "position_covariance[4]"}
      longitude: longitude
      horizontal_sigma_m: {path: position_covariance, reduce: sigma_h}
  - schema: foxglove.CompressedImage
    encodings: [protobuf]
    topic: /custom/camera
    table: frames
    sensor: {path: frame_id}
    columns:
      format: format
      data: data
"""


def test_generated_writers_agree_with_the_general_path(tmp_path, monkeypatch):
    """Each channel's generated writer (attribute paths, enum names, units and constants
    inline; protobuf payloads parsed into a reused or, when large, a fresh message) gives the
    rows of the general path (fill plus getters), for random messages (seed 12) of every
    built-in protobuf adapter and of adapters using every kind of column; and whole drives,
    protobuf and ROS 2, decode to the same tables and counts either way."""
    from google.protobuf import message_factory

    from dataloop.ingest.adapters import codecs
    from dataloop.ingest.adapters.codecs import codec
    from dataloop.ingest.adapters.extract import TableRows, bind
    from dataloop.ingest.adapters.known import protobuf_pool
    from dataloop.ingest.tables import SCHEMAS

    monkeypatch.setattr(codecs, "REUSES", 7)  # renew the reused message often
    adapters = load_adapters(_rules(tmp_path, {"custom.yaml": CUSTOM_PROTOBUF}))
    rng = np.random.default_rng(12)
    checked = 0
    for adapter in adapters.adapters:
        if "protobuf" not in adapter.encodings:
            continue
        found = codec("protobuf", "protobuf", adapter.schema, b"")
        binding = bind(adapter, found, adapter.topic or "/camera/front/image")
        cls = message_factory.GetMessageClass(protobuf_pool().FindMessageTypeByName(adapter.schema))
        tables = [TableRows([f.name for f in SCHEMAS[adapter.table]][2:]) for _ in range(2)]
        writers = [tables[0].writer(binding), tables[1].writer(binding, generated=False)]
        for k in range(40):
            msg = cls()
            _random_protobuf(msg, rng)
            payload = msg.SerializeToString()
            for write in writers:
                try:
                    write(memoryview(payload), T0 + k, T0 - k, (0, "", 0, 0), 10 * k, 31)
                except binding.errors as err:  # a stamp that is no stamp: both fail alike
                    assert isinstance(err, ValueError), adapter.schema
        assert tables[0].cols == tables[1].cols, adapter.schema
        assert len(tables[0]) > 0, adapter.schema
        checked += 1
    assert checked >= 15

    general = TableRows.writer
    for fmt in ("protobuf", "ros2"):
        path = write_synthetic_drive(
            tmp_path / f"{fmt}.mcap", vehicle="v", drive="d", start_ns=T0,
            duration_s=3.0, seed=3, log_format=fmt,
        )  # fmt: skip
        logs = []
        for generated in (True, False):
            monkeypatch.setattr(
                TableRows, "writer", lambda self, b, g=generated: general(self, b, generated=g)
            )
            with path.open("rb") as f:
                logs.append(decode_log(f, vehicle="v", drive="d"))
        assert logs[0].tables == logs[1].tables and logs[0].messages == logs[1].messages, fmt
