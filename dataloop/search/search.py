"""Text-to-scene and image-to-image search over the index, returning ranked clips.

Text: the query is embedded with the text encoder and compared (cosine) with the clips' scene
descriptions, after the structured filters. Image: the query frame is embedded with the image
encoder and compared with every indexed frame and clip keyframe; each hit frame becomes the
clip that contains it, or a window of +-3 s around it where no clip does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataloop.lake.store import ObjectStore
from dataloop.search import vectors as V
from dataloop.search.index import SearchIndex, load_index

WINDOW_NS = 3_000_000_000
"""Half-width of the window around an image hit that no clip contains."""


@dataclass(frozen=True)
class Filters:
    """Structured filters, applied before ranking. ``None`` matches everything."""

    condition: str | None = None
    road: str | None = None
    scenario: str | None = None
    vehicle: str | None = None
    camera: str | None = None
    """Image search only: frames of this camera (clips stand for their front camera)."""

    def rows(self, table: pa.Table, scenario: bool = True) -> np.ndarray | None:
        """Row numbers of ``table`` that pass (None: no filter set, every row)."""
        mask = None
        if self.condition:
            word = rf"(^|[,+;/ ]){_escape(self.condition.lower())}($|[,+;/ ])"
            mask = _and(mask, pc.match_substring_regex(table.column("conditions"), word))
        if self.road:
            mask = _and(mask, pc.equal(table.column("road"), self.road))
        if self.vehicle:
            mask = _and(mask, pc.equal(table.column("vehicle_id"), self.vehicle))
        if self.camera:
            mask = _and(mask, pc.equal(table.column("camera"), self.camera))
        if scenario and self.scenario:
            hits = [
                s == self.scenario or self.scenario in (tags or [])
                for s, tags in zip(
                    table.column("scenario").to_pylist(),
                    table.column("tags").to_pylist(),
                    strict=True,
                )
            ]
            mask = _and(mask, pa.array(hits, pa.bool_()))
        if mask is None:
            return None
        return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def _and(mask, other):
    return other if mask is None else pc.and_(mask, other)


@dataclass
class Hit:
    """One ranked result: a clip, or a window around a frame no clip contains."""

    rank: int
    score: float
    kind: str
    """``clip`` or ``window``."""
    vehicle_id: str
    drive_id: str
    start_ns: int
    end_ns: int
    frame_ns: int
    """The frame that stands for the hit (the clip's keyframe, or the matching frame)."""
    camera: str | None = None
    """The camera of that frame."""
    clip_id: str | None = None
    scenario: str | None = None
    severity: float | None = None
    tags: list[str] = field(default_factory=list)
    road: str | None = None
    conditions: str | None = None
    description: str | None = None
    day: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("start", "end", "frame"):
            out[name] = _iso(out[f"{name}_ns"])
        return out


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _clip_hit(
    index: SearchIndex,
    row: int,
    score: float,
    frame_ns: int | None = None,
    camera: str | None = None,
) -> Hit:
    c = index.clips.slice(row, 1).to_pylist()[0]
    start = int(index.clips.column("start_t").cast(pa.int64())[row].as_py())
    end = int(index.clips.column("end_t").cast(pa.int64())[row].as_py())
    keyframe = int(index.clips.column("t").cast(pa.int64())[row].as_py())
    return Hit(
        rank=0,
        score=float(score),
        kind="clip",
        vehicle_id=c["vehicle_id"],
        drive_id=c["drive_id"],
        start_ns=start,
        end_ns=end,
        frame_ns=frame_ns if frame_ns is not None else keyframe,
        camera=camera if frame_ns is not None else c.get("camera"),
        clip_id=c["clip_id"],
        scenario=c["scenario"],
        severity=c["severity"],
        tags=list(c["tags"] or []),
        road=c["road"],
        conditions=c["conditions"],
        description=c["description"],
        day=c["day"],
    )


def _ranked(hits: list[Hit]) -> list[Hit]:
    for i, h in enumerate(hits, 1):
        h.rank = i
    return hits


def text_search(
    store: ObjectStore,
    query: str,
    k: int = 10,
    filters: Filters | None = None,
    days: list[str] | None = None,
    index: SearchIndex | None = None,
) -> list[Hit]:
    """Clips ranked by cosine between ``query`` and their scene descriptions."""
    from dataloop.search.encoders import text_encoder

    index = index or load_index(store, days)
    if not index.clips.num_rows:
        return []
    rows = replace(filters or Filters(), camera=None).rows(index.clips)  # a clip is all cameras
    vector = text_encoder().encode([query])[0]
    faiss_index = index.faiss_index("clips") if rows is None else None
    scores, found = V.top_k(faiss_index, index.clip_vectors, vector, k, rows)
    return _ranked([_clip_hit(index, int(r), s) for s, r in zip(scores, found, strict=True)])


def image_search(
    store: ObjectStore,
    image: np.ndarray,
    k: int = 10,
    filters: Filters | None = None,
    days: list[str] | None = None,
    index: SearchIndex | None = None,
) -> list[Hit]:
    """Clips (or +-3 s windows) ranked by how alike their frames look to ``image`` (RGB)."""
    from dataloop.search.encoders import image_encoder

    index = index or load_index(store, days)
    if not index.images.num_rows:
        return []
    filters = filters or Filters()
    rows = filters.rows(index.images, scenario=False)
    vector = image_encoder().encode([image])[0]
    faiss_index = index.faiss_index("images") if rows is None else None
    total = index.images.num_rows if rows is None else len(rows)
    want = min(total, max(50, 20 * k))
    while True:
        scores, found = V.top_k(faiss_index, index.image_vectors, vector, want, rows)
        hits = _to_clips(index, scores, found, k, filters.scenario)
        if len(hits) >= k or want >= total:
            return _ranked(hits)
        want = min(total, want * 4)


def _to_clips(
    index: SearchIndex, scores: np.ndarray, found: np.ndarray, k: int, scenario: str | None
) -> list[Hit]:
    """Best frame first, each frame becomes its clip (the shortest that contains it; a clip
    row's keyframe is its own clip) or a window; each clip or window once."""
    images = index.images
    kinds = images.column("kind")
    clip_ids = images.column("clip_id")
    vehicles, drives = images.column("vehicle_id"), images.column("drive_id")
    times = images.column("t").cast(pa.int64())
    cameras = images.column("camera")
    clip_row = {c: i for i, c in enumerate(index.clips.column("clip_id").to_pylist())}
    starts = index.clips.column("start_t").cast(pa.int64()).to_numpy()
    ends = index.clips.column("end_t").cast(pa.int64()).to_numpy()
    hits: list[Hit] = []
    seen: set[str] = set()
    windows: dict[tuple[str, str], list[int]] = {}
    for score, r in zip(scores, found, strict=True):
        r = int(r)
        vehicle, drive, t = vehicles[r].as_py(), drives[r].as_py(), int(times[r].as_py())
        if kinds[r].as_py() == "clip":
            row = clip_row[clip_ids[r].as_py()]
        else:
            inside = [i for i in index.clips_of_drive(vehicle, drive) if starts[i] <= t <= ends[i]]
            row = min(inside, key=lambda i: ends[i] - starts[i]) if inside else None
        if row is not None:
            hit = _clip_hit(index, row, score, frame_ns=t, camera=cameras[r].as_py())
            if hit.clip_id in seen or (scenario and not _has_scenario(hit, scenario)):
                continue
            seen.add(hit.clip_id)
        else:
            near = windows.setdefault((vehicle, drive), [])
            if scenario or any(abs(t - w) < 2 * WINDOW_NS for w in near):
                continue
            near.append(t)
            hit = Hit(
                rank=0,
                score=float(score),
                kind="window",
                vehicle_id=vehicle,
                drive_id=drive,
                start_ns=t - WINDOW_NS,
                end_ns=t + WINDOW_NS,
                frame_ns=t,
                camera=cameras[r].as_py(),
                road=images.column("road")[r].as_py(),
                conditions=images.column("conditions")[r].as_py(),
                day=images.column("day")[r].as_py(),
            )
        hits.append(hit)
        if len(hits) == k:
            break
    return hits


def _has_scenario(hit: Hit, scenario: str) -> bool:
    return hit.scenario == scenario or scenario in hit.tags
