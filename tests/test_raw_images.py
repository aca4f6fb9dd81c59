"""Raw camera images (#20): Foxglove ``RawImage`` (protobuf, JSON), ROS 2
``sensor_msgs/msg/Image`` and ROS 1 ``sensor_msgs/Image`` land in ``frames`` as format ``raw``
with their pixel encoding, size and row step; their pixels read back exactly through the one
decoder (``ingest.frames.frame_image``), compliance anonymises them like any camera, and a raw
image that does not fit its description quarantines its drive naming the topic."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataloop.fleet import contract
from dataloop.fleet.ros2_log import Ros2DriveLogWriter
from dataloop.fleet.ros2_msgs import definition
from dataloop.ingest.adapters import adapter_files, load_adapters
from dataloop.ingest.decode import DecodeError, decode_log
from dataloop.ingest.frames import decode_image, frame_image, iter_frames, raw_layout
from dataloop.ingest.tables import SCHEMAS, put_table
from dataloop.lake.local import LocalStore
from dataloop.rules import RulesError
from tests.helpers import ForeignChannel, write_minimal_log

T0 = 1_780_000_000 * 10**9
NO_CAMERA = [c for c in contract.CHANNELS if c is not contract.CAMERA]
RNG = np.random.default_rng(20)
RGB = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
"""A 5x4 colour frame: every pixel differs, so a wrong stride or channel order shows."""
MONO = RNG.integers(0, 256, (3, 7), dtype=np.uint8)
DEPTH = RNG.integers(0, 65536, (2, 3), dtype=np.uint16)


def _rows(pixels: np.ndarray, step: int, dtype: str | None = None) -> bytes:
    """Image bytes as a camera driver lays them out: each row padded to ``step`` bytes."""
    rows = [np.ascontiguousarray(r, dtype=dtype).tobytes() for r in pixels]
    return b"".join(r + b"\xee" * (step - len(r)) for r in rows)


IMAGES = {  # topic -> (message fields, the RGB pixels expected back)
    "/sensing/camera/front/image_raw": (
        {"encoding": "rgb8", "width": 5, "height": 4, "step": 20, "data": _rows(RGB, 20)},
        RGB,
    ),
    "/sensing/camera/rear/image_raw": (
        {"encoding": "bgr8", "width": 5, "height": 4, "step": 15,
         "data": _rows(RGB[..., ::-1], 15)},
        RGB,
    ),
    "/sensing/camera/mono/image_raw": (
        {"encoding": "mono8", "width": 7, "height": 3, "step": 8, "data": _rows(MONO, 8)},
        np.repeat(MONO[..., None], 3, axis=2),
    ),
    "/sensing/camera/depth/image_raw": (
        {"encoding": "16UC1", "width": 3, "height": 2, "step": 8, "is_bigendian": 1,
         "data": _rows(DEPTH, 8, ">u2")},
        np.repeat((DEPTH >> 8).astype(np.uint8)[..., None], 3, axis=2),
    ),
}  # fmt: skip


def _ros2_log(path: Path, images: dict[str, dict], frames: int = 3) -> Path:
    """A ROS 2 drive (mcap-ros2-support's writer) whose cameras record sensor_msgs/msg/Image."""
    with Ros2DriveLogWriter(path, vehicle="veh-ros", drive="d1", channels=NO_CAMERA) as log:
        image = log._writer.register_msgdef(
            "sensor_msgs/msg/Image", definition("sensor_msgs/msg/Image")
        )
        for k in range(100):
            t = T0 + k * 10_000_000
            log.imu(t, (0.0, 0.0, 9.81), (0.0, 0.0, 0.0))
            if k % 10 == 0:
                log.gnss(t, 48.1, 11.5)
                log.vehicle_state(t, speed_mps=5.0, steering_angle_rad=0.0, accelerator=0.1,
                                  brake=0.0, yaw_rate_radps=0.0)  # fmt: skip
                log.objects(t, [])
            if k % 10 == 0 and k // 10 < frames:
                header = {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}, "frame_id": "cam"}
                for topic, fields in images.items():
                    log._writer.write_message(topic, image, {"header": header, **fields}, t, t)
    return path


def _pixels_back(tmp_path: Path, path: Path, frames: pa.Table) -> list[tuple[str, np.ndarray]]:
    store = LocalStore(tmp_path / "lake")
    store.put(f"raw/{path.name}", path.read_bytes())
    rows = frames.sort_by("seq").to_pylist()
    read = iter_frames(store, f"raw/{path.name}", rows)
    return [(r["camera"], frame_image(r, data)) for r, data in read]


def test_ros2_raw_images_land_in_frames_and_their_pixels_read_back_exactly(tmp_path):
    images = {topic: fields for topic, (fields, _) in IMAGES.items()}
    path = _ros2_log(tmp_path / "ros2.mcap", images)
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-ros", drive="d1")
    assert log.unmapped == []
    frames = log.tables["frames"]
    assert frames.num_rows == 12
    by_camera = {r["camera"]: r for r in frames.to_pylist()}
    assert set(by_camera) == {"front", "rear", "mono", "depth"}
    front = by_camera["front"]
    assert (front["format"], front["pixel_encoding"], front["width"], front["height"]) == (
        "raw", "rgb8", 5, 4,
    )  # fmt: skip
    assert (front["step"], front["big_endian"], front["jpeg_bytes"], front["jpeg_valid"]) == (
        20, False, 80, True,
    )  # fmt: skip
    assert by_camera["depth"]["big_endian"] is True
    expected = {sensor_topic.split("/")[3]: rgb for sensor_topic, (_, rgb) in IMAGES.items()}
    back = _pixels_back(tmp_path, path, frames)
    assert len(back) == 12
    for camera, pixels in back:
        assert pixels.dtype == np.uint8 and pixels.shape == expected[camera].shape
        assert np.array_equal(pixels, expected[camera]), camera


def _raw_image_pb(fields: dict) -> bytes:
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    return RawImage(frame_id="cam", **fields).SerializeToString()


def test_foxglove_raw_images_decode_in_protobuf_and_json(tmp_path):
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    from mcap_protobuf.schema import build_file_descriptor_set

    fields, rgb = IMAGES["/sensing/camera/front/image_raw"]
    fields = {k: v for k, v in fields.items() if k != "is_bigendian"}
    as_json = {**fields, "data": base64.b64encode(fields["data"]).decode()}
    foreign = [
        ForeignChannel("/camera/front/image", "foxglove.RawImage", "protobuf", "protobuf",
                       _raw_image_pb(fields), 4,
                       build_file_descriptor_set(RawImage).SerializeToString()),
        ForeignChannel("/camera/side/image", "foxglove.RawImage", "jsonschema", "json",
                       json.dumps(as_json).encode(), 2),
    ]  # fmt: skip
    path = write_minimal_log(tmp_path / "fox.mcap", channels=NO_CAMERA, foreign=foreign, t0=T0)
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-1", drive="drive-1")
    frames = log.tables["frames"]
    assert frames.num_rows == 6 and set(frames["format"].to_pylist()) == {"raw"}
    assert set(frames["big_endian"].to_pylist()) == {None}  # Foxglove has none: little-endian
    back = _pixels_back(tmp_path, path, frames)
    assert sorted(c for c, _ in back) == ["front"] * 4 + ["side"] * 2
    assert all(np.array_equal(p, rgb) for _, p in back)


def test_a_ros1_raw_image_decodes_through_mcap_ros1_support(tmp_path):
    from mcap_ros1._vendor.genpy.dynamic import generate_dynamic

    text = (
        "Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
        "uint32 step\nuint8[] data\n" + "=" * 80 + "\nMSG: std_msgs/Header\n"
        "uint32 seq\ntime stamp\nstring frame_id\n"
    )
    cls = generate_dynamic("sensor_msgs/Image", text)["sensor_msgs/Image"]
    fields, expected = IMAGES["/sensing/camera/mono/image_raw"]
    msg = cls(**{k: v for k, v in fields.items()}, is_bigendian=0)
    buf = io.BytesIO()
    msg.serialize(buf)
    foreign = [ForeignChannel("/usb_cam/image_raw", "sensor_msgs/Image", "ros1msg", "ros1",
                              buf.getvalue(), 3, text.encode())]  # fmt: skip
    path = write_minimal_log(tmp_path / "ros1.mcap", channels=NO_CAMERA, foreign=foreign, t0=T0)
    with path.open("rb") as f:
        frames = decode_log(f, vehicle="veh-1", drive="drive-1").tables["frames"]
    assert frames["pixel_encoding"].to_pylist() == ["mono8"] * 3
    back = _pixels_back(tmp_path, path, frames)
    assert [c for c, _ in back] == ["usb_cam"] * 3
    assert all(np.array_equal(p, expected) for _, p in back)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"data": _rows(RGB, 20)[:-1]}, "79 bytes of pixels, fewer than height x step = 4 x 20"),
        ({"step": 14}, "step 14 is shorter than a row of 5 rgb8 pixels (15 bytes)"),
        ({"encoding": "yuv9"}, "unknown pixel encoding 'yuv9'"),
        ({"width": 100_000, "height": 100_000, "step": 300_000}, "over 67108864 pixels"),
        ({"width": 50_000, "height": 1000, "step": 150_000}, "fewer than height x step"),
        ({"width": 0}, "0x4 pixels has no pixels"),
    ],
)
def test_a_raw_image_that_does_not_fit_its_description_quarantines_naming_the_topic(
    tmp_path, fields, reason
):
    """Too few bytes for its rows, a row step shorter than its pixels, an unknown pixel
    encoding or a hostile size: the drive is undecodable, the topic and the reason named, and
    nothing near the claimed size is allocated."""
    import tracemalloc

    good = IMAGES["/sensing/camera/front/image_raw"][0]
    path = _ros2_log(tmp_path / "bad.mcap", {"/sensing/camera/front/image_raw": good | fields})
    tracemalloc.start()
    with path.open("rb") as f, pytest.raises(DecodeError) as err:
        decode_log(f, vehicle="veh-ros", drive="d1")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err.value.code == "undecodable_message"
    assert "topic '/sensing/camera/front/image_raw'" in err.value.detail
    assert reason in err.value.detail, err.value.detail
    assert peak < 64 * 1024 * 1024


def test_the_one_decoder_refuses_what_does_not_fit_and_decodes_image_files():
    """frame_image is what every consumer calls: a row that claims more pixels than its bytes
    hold is a ValueError before any allocation; an image file (JPEG, PNG) decodes to RGB."""
    from PIL import Image

    hostile = {"format": "raw", "pixel_encoding": "rgb8", "width": 100_000, "height": 100_000}
    with pytest.raises(ValueError, match="over 67108864 pixels"):
        frame_image(hostile | {"step": 300_000}, b"\0" * 64)
    with pytest.raises(ValueError, match="fewer than height x step"):
        frame_image(hostile | {"width": 8000, "height": 8000, "step": 24_000}, b"\0" * 64)
    with pytest.raises(ValueError, match="undecodable image"):
        frame_image({"format": "jpeg"}, b"\xff\xd8 not a jpeg")
    assert raw_layout("bgra8", 2, 2, 8, 16) == (4, 1)
    png = io.BytesIO()
    Image.fromarray(RGB).save(png, "PNG")
    assert np.array_equal(frame_image({"format": "png"}, png.getvalue()), RGB)
    assert np.array_equal(decode_image(png.getvalue()), RGB)
    bgra = np.concatenate([RGB[..., ::-1], np.full((4, 5, 1), 7, np.uint8)], axis=2)
    row = {"format": "raw", "pixel_encoding": "bgra8", "width": 5, "height": 4, "step": 20}
    assert np.array_equal(frame_image(row, bgra.tobytes()), RGB)


def test_a_raw_frame_adapter_gives_its_size_encoding_and_step_together(tmp_path):
    folder = tmp_path / "adapters"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        "adapters:\n  - schema: acme_msgs/msg/Image\n    encodings: [cdr]\n    table: frames\n"
        "    columns: {data: data, width: width, height: height, pixel_encoding: encoding}\n"
    )
    files = {p: None for p in [*adapter_files(), folder / "acme.yaml"]}
    with pytest.raises(RulesError, match=r"acme\.yaml, line 2: .*missing: step"):
        load_adapters(files)


class _WholeFrame:
    """A detector that finds a face filling the frame: every pixel is blurred."""

    name, version = "whole-frame", "1"

    def detect(self, gray):
        from dataloop.quality.anonymise import Detection

        return [Detection("face", (0, 0, gray.shape[1], gray.shape[0]))]


def test_compliance_anonymises_a_raw_camera_into_the_frame_pack_as_jpeg(tmp_path):
    """A drive whose cameras are raw is made compliant like any other: every camera's frames
    are decoded by the one decoder, anonymised and packed as JPEGs that search decodes; a
    frame whose bytes no longer fit its row is dropped as undecodable, not passed on."""
    from dataloop.quality.compliance import make_compliant
    from dataloop.search.frames import decode_rgb, open_pack

    big = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    images = {
        "/camera/front/image_raw": {"encoding": "rgb8", "width": 64, "height": 48, "step": 200,
                                    "data": _rows(big, 200)},
        "/camera/mono/image_raw": {"encoding": "mono8", "width": 64, "height": 48, "step": 64,
                                   "data": _rows(big[..., 0], 64)},
    }  # fmt: skip
    path = _ros2_log(tmp_path / "ros2.mcap", images)
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-ros", drive="d1")
    store = LocalStore(tmp_path / "lake")
    store.put("raw/d1.mcap", path.read_bytes())
    frames = log.tables["frames"]
    lying = frames.to_pylist()
    lying[0]["step"] = 10_000  # a row edited to claim more than its bytes: dropped, counted
    frames = pa.Table.from_pylist(lying, schema=frames.schema)
    fix = {f.name: [None] for f in SCHEMAS["gnss"]} | {  # compliance needs a position
        "vehicle_id": ["veh-ros"], "drive_id": ["d1"], "t": frames["t"].to_pylist()[:1],
        "latitude": [48.1], "longitude": [11.5],
    }  # fmt: skip
    gnss = pa.Table.from_pydict(fix, schema=SCHEMAS["gnss"])
    tables = {
        "gnss": put_table(store, "gnss", "veh-ros", "d1", gnss),
        "frames": put_table(store, "frames", "veh-ros", "d1", frames),
    }
    record = {"vehicle": "veh-ros", "drive": "d1", "manifest_key": "m", "log_key": "raw/d1.mcap"}
    result = make_compliant(store, record | {"tables": tables}, _WholeFrame(), [], "test")
    assert (result["frames"], result["undecodable_dropped"]) == (5, 1)
    assert result["faces_blurred"] == 5
    pack = open_pack(store, "veh-ros", "d1", result)
    assert sorted(set(pack.camera)) == ["front", "mono"]
    seen = {"front": big, "mono": np.repeat(big[..., :1], 3, axis=2)}
    for camera, jpeg in zip(pack.camera, pack.read(store, range(len(pack.t))), strict=True):
        assert jpeg[:2] == b"\xff\xd8"
        pixels = decode_rgb(jpeg).astype(int)
        assert pixels.shape == (48, 64, 3)
        assert np.abs(pixels - seen[camera]).mean() > 10  # blurred
