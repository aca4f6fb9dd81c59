"""Search on fleet-simulator drives taken through the real pipeline (ingest, quality,
anonymisation, labels, scenario mining): text finds night, rain and flooded-road clips, a night
frame finds night frames, the contact sheet and the MCAP cut are right, on both lake backends."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from dataloop.cli import main
from dataloop.curation.clips import CLIP_SCHEMA, clip_id
from dataloop.curation.scenarios import load_scenarios, mine_day
from dataloop.fleet import contract
from dataloop.fleet.simulator.config import SimConfig
from dataloop.lake.local import LocalStore
from dataloop.lake.store import ObjectStore
from dataloop.search import vectors as V
from dataloop.search.describe import DriveScene, describe, scene_phrase
from dataloop.search.encoders import ImageEncoder, image_encoder, register_image_encoder
from dataloop.search.export import export_cut
from dataloop.search.frames import decode_rgb, has_frames, open_pack
from dataloop.search.index import build_day_index, indexed_days, load_index, purge
from dataloop.search.search import Filters, image_search, text_search
from dataloop.search.sheet import contact_sheet, sheet_size
from tests.helpers import simulated_lake

NS = 1_000_000_000
CONDITIONS = ("day", "night", "rain", "flooded")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Short drives in four conditions at intersections (20 s segments: many drives for little
    driving), taken through every hourly asset, mined and indexed."""
    root = tmp_path_factory.mktemp("search")
    config = replace(
        SimConfig().without_faults(),
        roads={"intersection": 1.0},
        conditions={c: 1.0 for c in CONDITIONS},
        corner_cases_per_hour={"cut_in": 240.0, "pedestrian_crossing": 240.0},
    )
    store, reports, _, hours = simulated_lake(root, config, vehicles=6, minutes=1.0, seed=3)
    days = sorted({h[:10] for h in hours})
    for day in days:
        mine_day(store, day, load_scenarios())
        build_day_index(store, day)
    truth = {(r.vehicle, d["drive"]): d["conditions"] for r in reports for d in r.drives}
    return store, truth, days


def _copy(src: ObjectStore, dst: ObjectStore) -> None:
    for info in src.list(""):
        dst.put(info.key, src.get(info.key))


# -- descriptions -------------------------------------------------------------------------------
def test_descriptions_read_like_a_scene():
    assert scene_phrase("night,rain", "highway") == "night on a highway, rain"
    assert scene_phrase("flooded", "intersection") == (
        "flooded road, standing water at an intersection"
    )
    t0 = 1_700_000_000 * NS
    scene = DriveScene(
        "highway",
        "night,rain",
        "offboard",
        t=np.full(8, t0 + NS),
        track=np.arange(8),
        cls=np.array(["car"] * 6 + ["truck", "pedestrian"], dtype=object),
        distance=np.full(8, 20.0),
        event_t=np.array([t0 + 2 * NS]),
        event_type=np.array(["disengagement"], dtype=object),
    )
    clip = {
        "scenario": "cut_in",
        "tags": ["pedestrian_crossing"],
        "start_t": t0,
        "end_t": t0 + 5 * NS,
    }
    assert describe({**clip, "conditions": "night,rain", "road": "highway"}, scene) == (
        "night on a highway, rain; a vehicle cuts in; a pedestrian crosses; "
        "6 cars, 1 truck, 1 pedestrian nearby; the safety driver took over"
    )


# -- search quality -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "condition"),
    [("night", "night"), ("driving in the rain", "rain"), ("flooded road", "flooded")],
)
def test_text_search_finds_the_condition(lake, query, condition):
    store, truth, _ = lake
    hits = text_search(store, query, k=10)
    assert len(hits) == 10
    precision = sum(truth[(h.vehicle_id, h.drive_id)] == condition for h in hits) / len(hits)
    assert precision >= 0.8, [(h.description, h.score) for h in hits]
    assert [h.rank for h in hits] == list(range(1, 11))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_structured_filters_come_before_ranking(lake):
    store, truth, _ = lake
    hits = text_search(store, "a pedestrian crosses", k=5, filters=Filters(condition="rain"))
    assert hits and all(truth[(h.vehicle_id, h.drive_id)] == "rain" for h in hits)
    cut_ins = text_search(store, "night", k=50, filters=Filters(scenario="cut_in"))
    assert cut_ins and all(h.scenario == "cut_in" or "cut_in" in h.tags for h in cut_ins)
    vehicle = next(iter(truth))[0]
    assert all(
        h.vehicle_id == vehicle
        for h in text_search(store, "rain", k=50, filters=Filters(vehicle=vehicle))
    )
    assert text_search(store, "rain", filters=Filters(road="highway")) == []


def test_a_night_frame_finds_night_frames(lake):
    store, truth, _ = lake
    vehicle, drive = next(k for k, c in sorted(truth.items()) if c == "night")
    pack = open_pack(store, vehicle, drive)
    frame = decode_rgb(pack.read(store, [len(pack.t) // 2])[0])
    hits = image_search(store, frame, k=10)
    assert len(hits) == 10
    night = [truth[(h.vehicle_id, h.drive_id)] == "night" for h in hits]
    assert sum(night) >= 8, [(h.drive_id, h.conditions, h.score) for h in hits]
    assert len({(h.vehicle_id, h.drive_id) for h in hits}) > 2, "other drives, not one"
    for h in hits:  # each hit is a clip containing its frame, or a window around it
        assert h.start_ns <= h.frame_ns <= h.end_ns
        assert h.kind == "window" or h.clip_id


# -- the index ----------------------------------------------------------------------------------
class MeanColour:
    """A stand-in image encoder, to prove encoders plug in by name."""

    name, dim = "mean-colour.v1", 3

    def encode(self, images):
        x = np.array([im.reshape(-1, 3).mean(0) for im in images], np.float32) + 1e-3
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_is_skipped_when_unchanged_and_encoders_plug_in(lake, tmp_path):
    store, _, days = lake
    assert build_day_index(store, days[0])["skipped"]
    copy = LocalStore(tmp_path / "lake")
    shutil.copytree(store.root, copy.root, dirs_exist_ok=True)
    assert isinstance(image_encoder("tests.test_search:MeanColour"), ImageEncoder)
    register_image_encoder("mean-colour", MeanColour)
    rebuilt = build_day_index(copy, days[0], image=image_encoder("mean-colour"))
    assert not rebuilt["skipped"] and rebuilt["image_dim"] == 3
    assert rebuilt["encoded"]["texts"] == 0, "unchanged descriptions are not encoded again"
    index = load_index(copy, image_encoder=MeanColour.name)
    frames = set(
        zip(
            index.images.column("vehicle_id").to_pylist(),
            index.images.column("drive_id").to_pylist(),
            index.images.column("t").to_pylist(),
            strict=True,
        )
    )
    assert rebuilt["encoded"]["images"] == len(frames), "every frame encoded anew, once"
    assert load_index(copy).other_encoder_days == [days[0]]
    assert index.days == [days[0]] and index.image_vectors.shape[1] == 3


def test_clips_of_drives_that_are_not_compliant_are_left_out(lake, tmp_path):
    store, truth, days = lake
    copy = LocalStore(tmp_path / "lake")
    shutil.copytree(store.root, copy.root, dirs_exist_ok=True)
    vehicle, drive = next(iter(truth))
    ghost = {
        "clip_id": clip_id("veh-x", "nowhere", "cut_in", 0),
        "vehicle_id": "veh-x",
        "drive_id": "nowhere",
        "drive_version": "0",
        "scenario": "cut_in",
        "start_t": 0,
        "end_t": NS,
        "severity": 1.0,
        "tags": [],
        "road": "highway",
        "conditions": "night",
        "day": days[0],
    }
    before = indexed_days(copy)[days[0]]["key"]
    clips = pa.Table.from_pylist([ghost], schema=CLIP_SCHEMA)
    record = build_day_index(copy, days[0], clips)
    assert record["clips"] == 0 and record["clips_not_compliant"] == 1
    assert record["frames"] > 0 and set(indexed_days(copy)) == set(days)

    # a deletion request: superseded tables with the drive go, the current one stays
    assert purge(copy, vehicle, drive) == [before]
    assert copy.exists(record["key"]) and purge(copy, vehicle, drive) == []


def test_ivf_agrees_with_brute_force_and_is_kept_in_the_lake(lake, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, 48))
    x = centres[rng.integers(0, 64, 20_000)] + 0.3 * rng.normal(size=(20_000, 48))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    queries = x[rng.integers(0, len(x), 50)] + 0.05 * rng.normal(size=(50, 48))
    flat, ivf = V.flat_index(x), V.ivf_index(x)
    recall = np.mean(
        [
            len(set(V.top_k(flat, x, q, 10)[1]) & set(V.top_k(ivf, x, q, 10)[1])) / 10
            for q in queries
        ]
    )
    assert recall >= 0.9
    rows = np.arange(0, len(x), 7)
    scores, found = V.top_k(None, x, queries[0], 5, rows)
    assert set(found) <= set(rows) and np.isclose(scores[0], (x[rows] @ queries[0]).max())
    assert type(V.deserialize(V.serialize(ivf))).__name__ == "IndexIVFFlat"

    store, _, _ = lake
    copy = LocalStore(tmp_path / "lake")
    shutil.copytree(store.root, copy.root, dirs_exist_ok=True)
    index = replace(load_index(copy), threshold=10, _faiss={})
    assert type(index.faiss_index("images")).__name__ == "IndexIVFFlat"
    assert [o.key for o in copy.list("search/faiss/")], "the trained index is kept"


# -- sheet, export, both backends, the command --------------------------------------------------
def test_search_sheet_and_mcap_cut_on_both_backends(lake, store, tmp_path):
    from mcap.reader import make_reader

    src, truth, days = lake
    _copy(src, store)
    for day in days:
        assert build_day_index(store, day)["skipped"], "the copied index is current"
    hits = text_search(store, "flooded road", k=7)
    assert hits and truth[(hits[0].vehicle_id, hits[0].drive_id)] == "flooded"
    sheet = contact_sheet(store, hits, tmp_path / "sheet.png", title="flooded road")
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.size == sheet_size(7) == (1236, 30 + 2 * 196)

    hit = next(h for h in hits if h.end_ns - h.start_ns > 2 * NS)
    cut = export_cut(
        store, hit.vehicle_id, hit.drive_id, hit.start_ns, hit.end_ns, tmp_path / "cut.mcap"
    )
    with open(cut["path"], "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        stats = summary.statistics
        assert hit.start_ns <= stats.message_start_time <= stats.message_end_time <= hit.end_ns
        assert stats.message_end_time - stats.message_start_time > (hit.end_ns - hit.start_ns) / 2
        topics = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        assert topics == {c.topic: c.schema for c in contract.CHANNELS}
        pack = open_pack(store, hit.vehicle_id, hit.drive_id)
        anonymised = dict(zip(pack.t.tolist(), range(len(pack.t)), strict=True))
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

        frames = 0
        for _, _, message in reader.iter_messages(topics=[contract.CAMERA.topic]):
            image = CompressedImage()
            image.ParseFromString(message.data)
            i = anonymised[message.log_time]
            assert image.data == pack.read(store, [i])[0], "the anonymised frame, not the raw"
            frames += 1
        assert frames == cut["messages"][contract.CAMERA.topic] > 10
        assert {m.name for m in reader.iter_metadata()} == {"dataloop.drive", "dataloop.cut"}


def test_the_command(lake, tmp_path, monkeypatch, capsys):
    store, truth, _ = lake
    monkeypatch.setenv("DATALOOP_LAKE", str(store.root))
    sheet, out = tmp_path / "s.png", tmp_path / "cuts"
    argv = ["search", "rain at an intersection", "--k", "4", "--sheet", str(sheet)]
    assert main([*argv, "--export-mcap", "2", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["hits"]) == 4 and sheet.exists()
    assert Image.open(sheet).size == sheet_size(4)
    assert [e["path"] for e in result["exports"]] == [str(p) for p in out.glob("*.mcap")]

    vehicle, drive = next(k for k, c in sorted(truth.items()) if c == "night")
    pack = open_pack(store, vehicle, drive)
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(pack.read(store, [0])[0])
    assert main(["search", "--like", str(frame), "--k", "3", "--condition", "night"]) == 0
    assert "contact sheet" in capsys.readouterr().out
    assert (store.root.parent / "search" / "like-frame.png").exists(), "beside the lake"
    assert main(["search"]) == 2
    assert main(["search", "--like", str(tmp_path / "missing.jpg")]) == 2


def test_anonymised_frames_are_a_frame_pack_and_its_index(tmp_path):
    """``has_frames``: the one test of "has anonymised frames", for ``framed`` and
    ``open_pack`` alike."""
    assert has_frames({"frame_pack": "p", "frame_index": "i"})
    assert not any(has_frames(c) for c in (None, {}, {"frame_pack": "p"}, {"frame_index": "i"}))
    with pytest.raises(LookupError, match="no anonymised frames"):
        open_pack(LocalStore(tmp_path / "lake"), "veh-1", "d", {"frame_pack": "p"})
