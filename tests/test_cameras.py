"""Several cameras: a drive recorded with a front and a rear camera is anonymised camera by
camera, indexed for search camera by camera (a frame row per camera, the clip keyframes of
the fleet profile's front camera), and an image search can keep to one camera."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from PIL import Image, ImageOps

from dataloop.curation.clips import CLIP_SCHEMA
from dataloop.fleet import contract
from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.ingest.hour import arrival_hours
from dataloop.ingest.tables import read_table
from dataloop.lake import ledger
from dataloop.lake.local import LocalStore
from dataloop.quality.anonymise import HaarDetector
from dataloop.quality.approved import approve_hour
from dataloop.quality.compliance import comply_hour
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_suites
from dataloop.search.frames import decode_rgb, open_pack
from dataloop.search.index import build_day_index, load_index
from dataloop.search.search import Filters, image_search
from tests.helpers import commit_raw, ingest_hour, rerecord, upload_days
from tests.test_search import MeanColour


def _mirrored(payload: bytes) -> bytes:
    """The front frame, mirrored and darkened: a rear camera that looks unlike the front."""
    msg = CompressedImage.FromString(payload)
    with Image.open(io.BytesIO(msg.data)) as img:
        out = io.BytesIO()
        ImageOps.mirror(img.convert("RGB")).point(lambda v: v // 3).save(out, "JPEG")
    msg.data = out.getvalue()
    return msg.SerializeToString()


def test_every_camera_is_anonymised_and_indexed_and_search_keeps_to_one(tmp_path, monkeypatch):
    monkeypatch.setenv("DATALOOP_IMAGE_ENCODER", "tests.test_search:MeanColour")
    store = LocalStore(tmp_path / "lake")
    start = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1e9)
    one = write_synthetic_drive(
        tmp_path / "one.mcap", vehicle="veh-1", drive="two-cams", start_ns=start, duration_s=12.0
    )
    copies = {contract.CAMERA.topic: ("/camera/rear/image", _mirrored)}
    commit_raw(store, rerecord(one, tmp_path / "two.mcap", copies=copies), vehicle="veh-1",
               drive="two-cams")  # fmt: skip
    hours = arrival_hours(store, upload_days(store))
    for hour in hours:
        ingest_hour(store, hour)
        check_hour(store, hour, load_suites())
        assert approve_hour(store, hour) == [("veh-1", "two-cams")]
        (result,) = comply_hour(store, hour, HaarDetector(), [], "v1")
    index = read_table(store, result["frame_index"])
    per_camera = dict(zip(*np.unique(index["camera"].to_numpy(zero_copy_only=False),
                                     return_counts=True), strict=True))  # fmt: skip
    assert set(per_camera) == {"front", "rear"} and per_camera["front"] == per_camera["rear"]
    assert result["frames"] == sum(per_camera.values())
    assert {c: v["frames"] for c, v in result["per_camera"].items()} == per_camera

    record = ledger.section(store, "veh-1", "two-cams", ledger.INGEST)
    frames = read_table(store, record["tables"]["frames"]["key"])
    mid = int(frames["t"].cast(pa.int64())[len(frames) // 2].as_py())
    day = hours[0][:10]
    clip = {f.name: None for f in CLIP_SCHEMA} | {
        "clip_id": "c1", "vehicle_id": "veh-1", "drive_id": "two-cams", "drive_version": "v",
        "scenario": "hard_brake", "start_t": mid - 2_000_000_000, "end_t": mid + 2_000_000_000,
        "severity": 1.0, "tags": [], "road": "highway", "conditions": "day", "day": day,
    }  # fmt: skip
    clips = pa.Table.from_pylist([clip], schema=CLIP_SCHEMA)
    pointer = build_day_index(store, day, clips, frame_every_s=2.0)
    assert pointer["set_aside"] == []
    loaded = load_index(store, image_encoder=MeanColour.name)
    frame_rows = loaded.images.filter(pa.compute.equal(loaded.images["kind"], "frame"))
    cams = frame_rows["camera"].to_pylist()
    assert cams.count("front") == cams.count("rear") >= 5, "each camera is sampled"
    assert loaded.clips["camera"].to_pylist() == ["front"], "a clip stands for its front camera"

    pack = open_pack(store, "veh-1", "two-cams")
    rear = pack.of("rear")
    query = decode_rgb(rear.read(store, [len(rear.t) // 2])[0])
    both = image_search(store, query, k=5, index=loaded)
    assert both[0].camera == "rear", "the darker rear frame is the nearest"
    only_front = image_search(store, query, k=3, filters=Filters(camera="front"), index=loaded)
    assert only_front and {h.camera for h in only_front} == {"front"}
