"""Human review of low-confidence tracks, in COCO: export the boxes projected onto the
anonymised camera frames (importable by CVAT or Label Studio), import the reviewed file back.

A reviewed annotation may change its track's category, or carry the attribute
``"reject": true`` to drop the track; every change lands in a new version of the drive's label
table and in its labelling record (the drive's lineage).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataloop.fleet.simulator.camera import Camera
from dataloop.ingest.tables import put_table, read_table
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_json
from dataloop.lake.store import ObjectStore
from dataloop.quality.suites import load_fleet, pick_front

CATEGORIES = ["car", "truck", "pedestrian", "cyclist", "motorcycle", "unknown"]
FRONT_CAMERA = Camera()
"""The simulated fleet's front camera; a real fleet's calibration would come with its logs."""


def _box(row: dict, camera: Camera) -> list[float] | None:
    """The object's near face projected to a pixel box [x, y, width, height], or None."""
    near = row["x"] - row["length"] / 2
    if near < 2.0:
        return None
    u0, v0 = camera.project(near, row["y"] + row["width"] / 2, row["height"])
    u1, v1 = camera.project(near, row["y"] - row["width"] / 2, 0.0)
    u0, u1 = max(0.0, u0), min(float(camera.width), u1)
    v0, v1 = max(0.0, v0), min(float(camera.height), v1)
    if u1 - u0 < 1 or v1 - v0 < 1:
        return None
    return [round(u0, 2), round(v0, 2), round(u1 - u0, 2), round(v1 - v0, 2)]


def export_coco(
    store: ObjectStore, drives: list[tuple[str, str]], below: float, camera: Camera = FRONT_CAMERA
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """COCO for the tracks whose confidence is below ``below``, and the anonymised frames it
    references (file name -> JPEG), of the fleet profile's front camera (boxes are projected
    with its calibration ``camera``)."""
    front_camera = load_fleet()["front_camera"]
    coco: dict[str, Any] = {
        "info": {"description": "dataloop offboard labels for review"},
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CATEGORIES)],
    }
    images: dict[str, bytes] = {}
    for vehicle, drive in drives:
        state = ledger.drive(store, vehicle, drive)
        if state is None or not state.labels or not state.compliant:
            continue
        record, compliance = state.labels, state.compliance
        labels = read_table(store, record["labels"])
        low = labels.filter(pc.less(labels.column("confidence"), below))
        if low.num_rows == 0:
            continue
        index = read_table(store, compliance["frame_index"]).to_pylist()
        front = pick_front((row["camera"] for row in index), front_camera)
        frames = {row["t"]: row for row in index if row["camera"] == front}
        pack = store.get(compliance["frame_pack"])
        image_ids: dict[Any, int] = {}
        for row in low.to_pylist():
            frame = frames.get(row["t"])
            box = _box(row, camera) if frame else None
            if box is None:
                continue
            if row["t"] not in image_ids:
                name = f"{vehicle}/{drive}/{int(row['t'].timestamp() * 1e9)}.jpg"
                image_ids[row["t"]] = len(coco["images"]) + 1
                coco["images"].append(
                    {
                        "id": image_ids[row["t"]],
                        "file_name": name,
                        "width": camera.width,
                        "height": camera.height,
                    }
                )
                images[name] = pack[frame["offset"] : frame["offset"] + frame["length"]]
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_ids[row["t"]],
                    "category_id": CATEGORIES.index(row["object_class"]) + 1
                    if row["object_class"] in CATEGORIES
                    else len(CATEGORIES),
                    "bbox": box,
                    "area": round(box[2] * box[3], 2),
                    "iscrowd": 0,
                    "attributes": {
                        "vehicle": vehicle,
                        "drive": drive,
                        "track_id": row["track_id"],
                        "confidence": round(row["confidence"], 3),
                    },
                }
            )
    return coco, images


def import_reviewed(store: ObjectStore, coco: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply a reviewed COCO file; returns one change per reviewed track."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    votes: dict[tuple[str, str, int], Counter] = {}
    rejected: set[tuple[str, str, int]] = set()
    for a in coco["annotations"]:
        attrs = a.get("attributes", {})
        key = (attrs["vehicle"], attrs["drive"], int(attrs["track_id"]))
        votes.setdefault(key, Counter())[names[a["category_id"]]] += 1
        if attrs.get("reject"):
            rejected.add(key)
    review_id = sha256_json(coco)[:16]
    changes = []
    for vehicle, drive in sorted({(v, d) for v, d, _ in votes}):
        record = ledger.section(store, vehicle, drive, ledger.LABELS)
        labels = read_table(store, record["labels"])
        columns = {name: labels.column(name).to_pylist() for name in labels.schema.names}
        keep = [True] * labels.num_rows
        drive_changes = []
        for (v, d, track), counter in votes.items():
            if (v, d) != (vehicle, drive):
                continue
            category = counter.most_common(1)[0][0]
            rows = [i for i, t in enumerate(columns["track_id"]) if t == track]
            if not rows:
                continue
            before = columns["object_class"][rows[0]]
            for i in rows:
                columns["object_class"][i] = category
                columns["reviewed"][i] = True
                if (v, d, track) in rejected:
                    keep[i] = False
            drive_changes.append(
                {
                    "track_id": track,
                    "class_from": before,
                    "class_to": category,
                    "rejected": (v, d, track) in rejected,
                    "review": review_id,
                }
            )
        table = pa.Table.from_pydict(columns, schema=labels.schema).filter(pa.array(keep))
        key = put_table(store, "labels", vehicle, drive, table)["key"]
        ledger.write_section(
            store,
            vehicle,
            drive,
            ledger.LABELS,
            {
                **record,
                "labels": key,
                "reviews": record.get("reviews", []) + drive_changes,
                "labels_before_review": record.get("labels_before_review", record["labels"]),
            },
        )
        changes += [{"vehicle": vehicle, "drive": drive, **c} for c in drive_changes]
    return changes
