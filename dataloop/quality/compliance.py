"""Compliance for one approved drive: faces and plates blurred in every frame, GNSS
coarsened or the drive excluded by geofence; what was done is recorded in the drive's lineage.

The original frames never leave the raw zone: downstream stages read the anonymised frame
pack (``derived/frames/...``) and the public GNSS table, never the raw log.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections import Counter
from typing import Any

import pyarrow as pa

from dataloop.infra.workers import DrivesFailed, Failure, map_drives, split
from dataloop.ingest.frames import frame_image, iter_frames
from dataloop.ingest.tables import T, lacking, put_table, read_table
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.quality.anonymise import Detector, anonymise_image
from dataloop.quality.approved import read_approved
from dataloop.quality.geofence import Zone, apply_geofence

NEEDS = ("gnss",)
"""A drive without positions cannot be shown to lie outside the geofence: set aside."""

FRAME_INDEX = pa.schema(
    [
        ("vehicle_id", pa.string()),
        ("drive_id", pa.string()),
        ("t", T),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("faces", pa.int32()),
        ("plates", pa.int32()),
        ("camera", pa.string()),
    ]
)


def _anonymise_frames(store: ObjectStore, record: dict, detector: Detector) -> dict[str, Any]:
    vehicle, drive = record["vehicle"], record["drive"]
    counts: Counter = Counter()
    rows: dict[str, list] = {f.name: [] for f in FRAME_INDEX}
    digest = hashlib.sha256()
    frames = read_table(store, record["tables"]["frames"]["key"]).sort_by("seq")
    frames = frames.set_column(
        frames.schema.get_field_index("t"), "t", frames["t"].cast(pa.int64())
    ).to_pylist()
    with tempfile.TemporaryFile() as pack:
        offset = 0
        for row, original in iter_frames(store, record["log_key"], frames):
            try:
                jpeg, found = anonymise_image(frame_image(row, original), detector)
            except ValueError:  # a JPEG that does not decode, raw pixels that do not fit
                counts["undecodable"] += 1  # never passed on: the frame is dropped
                continue
            kinds = Counter(d.kind for d in found)
            counts.update(kinds)
            pack.write(jpeg)
            digest.update(jpeg)
            for name, value in (
                ("vehicle_id", vehicle),
                ("drive_id", drive),
                ("t", row["t"]),
                ("offset", offset),
                ("length", len(jpeg)),
                ("faces", kinds["face"]),
                ("plates", kinds["plate"]),
                ("camera", row.get("camera") or "front"),
            ):
                rows[name].append(value)
            offset += len(jpeg)
        pack_key = L.frame_pack_key(vehicle, drive, digest.hexdigest())
        pack.seek(0)
        if not store.exists(pack_key):
            with contextlib.suppress(ObjectExists):
                store.put_stream(pack_key, pack)
    index = pa.Table.from_pydict(rows, schema=FRAME_INDEX)
    index_key = put_table(store, "frames_anonymised", vehicle, drive, index)["key"]
    return {
        "frames": len(rows["t"]),
        "faces_blurred": counts["face"],
        "plates_blurred": counts["plate"],
        "undecodable_dropped": counts["undecodable"],
        "per_camera": _per_camera(rows),
        "frame_pack": pack_key,
        "frame_index": index_key,
    }


def _per_camera(rows: dict[str, list]) -> dict[str, dict[str, int]]:
    """Frames, faces and plates blurred, per camera (the compliance record shows each)."""
    out: dict[str, dict[str, int]] = {}
    for camera, faces, plates in zip(rows["camera"], rows["faces"], rows["plates"], strict=True):
        c = out.setdefault(camera, {"frames": 0, "faces_blurred": 0, "plates_blurred": 0})
        c["frames"] += 1
        c["faces_blurred"] += faces
        c["plates_blurred"] += plates
    return dict(sorted(out.items()))


def make_compliant(
    store: ObjectStore,
    record: dict,
    detector: Detector,
    zones: list[Zone],
    version: str,
    *,
    index: bool = True,
) -> dict[str, Any]:
    """Anonymise one drive (``record``: its ingest section), skipped when already done at
    this compliance version; the result is the drive's compliance section of the ledger."""
    vehicle, drive = record["vehicle"], record["drive"]
    done = ledger.section(store, vehicle, drive, ledger.COMPLIANCE)
    if done and done["version"] == version and done["manifest_key"] == record["manifest_key"]:
        return {**done, "skipped": True}
    base = {k: record[k] for k in ("vehicle", "drive", "manifest_key")}
    if reason := lacking(record["tables"], NEEDS):
        result = {**base, "version": version, "excluded": True, "set_aside": reason}
        ledger.write_section(
            store, vehicle, drive, ledger.COMPLIANCE, result, record.get("hour"), index=index
        )
        return result
    gnss = read_table(store, record["tables"]["gnss"]["key"])
    lat, lon, fence = apply_geofence(
        gnss.column("latitude").to_numpy(), gnss.column("longitude").to_numpy(), zones
    )
    result: dict[str, Any] = {
        **base,
        "version": version,
        "anonymiser": {"name": detector.name, "version": detector.version},
        "geofence": {
            "zones": fence.zones_hit,
            "excluded_by": fence.excluded_by,
            "coarsened_points": fence.coarsened_points,
        },
        "excluded": bool(fence.excluded_by),
    }
    if not fence.excluded_by:
        public = gnss.set_column(
            gnss.schema.get_field_index("latitude"), "latitude", pa.array(lat)
        ).set_column(gnss.schema.get_field_index("longitude"), "longitude", pa.array(lon))
        result["gnss_public"] = put_table(
            store, "gnss_public", record["vehicle"], record["drive"], public
        )["key"]
        result.update(_anonymise_frames(store, record, detector))
    ledger.write_section(
        store, vehicle, drive, ledger.COMPLIANCE, result, record.get("hour"), index=index
    )
    return result


def comply_hour(
    store: ObjectStore, hour: str, detector: Detector, zones: list[Zone], version: str
) -> list[dict[str, Any]]:
    """Make every approved drive of the hour compliant; index the ones downstream may use."""
    known = {(s.vehicle, s.drive): s.ingest for s in ledger.hour_drives(store, hour)}
    approved = list(read_approved(store, hour))
    records = [known.get((v, d)) or ledger.section(store, v, d, ledger.INGEST) for v, d in approved]
    outcomes = map_drives(_make_compliant, store, records, detector, zones, version)
    results, failures = split(outcomes)
    ledger.index_hour(store, hour, ledger.COMPLIANCE, [(r["vehicle"], r["drive"]) for r in results])
    if failures:
        raise DrivesFailed(
            "compliance",
            [
                (f"{v}/{d}", o)
                for (v, d), o in zip(approved, outcomes, strict=True)
                if isinstance(o, Failure)
            ],
        )
    return results


def _make_compliant(
    store: ObjectStore, record: dict, detector: Detector, zones: list[Zone], version: str
) -> dict[str, Any]:
    """``make_compliant`` as one drive of an hour: the hour writes the index once."""
    return make_compliant(store, record, detector, zones, version, index=False)
