"""The search index: per arrival day, one Parquet of embeddings in the lake.

Rows of two kinds, in one table:
- ``clip``: a clip of the scenario index with its scene description, the description's text
  embedding (MiniLM, 384-d) and its keyframe's image embedding (the frame nearest the middle);
- ``frame``: one anonymised frame every ``frame_every_s`` seconds of every camera of every
  compliant drive of the day, with its image embedding and where it is (vehicle, drive,
  camera, t).

A clip's keyframe is its front camera's (the fleet profile's ``front_camera``). A compliant
drive without frames is set aside (``no_frames``), its clips with it.

The table is content-addressed (``search/embeddings/date=<day>/<sha>.parquet``, written once)
and the day's pointer (``search/embeddings/date=<day>.json``) names the current one. A rebuild
re-encodes only what changed: embeddings of unchanged frames and clips are carried over.
"""

from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataloop.curation.clips import CLIP_SCHEMA, T
from dataloop.ingest.tables import lacking, to_parquet
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_json
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectExists, ObjectNotFound, ObjectStore
from dataloop.quality.suites import load_fleet
from dataloop.search import vectors as V
from dataloop.search.describe import DESCRIBER_VERSION, describe, load_drive_scene
from dataloop.search.encoders import TEXT_DIM, ImageEncoder, TextEncoder
from dataloop.search.frames import FramePack, decode_rgb, framed, open_pack

FRAME_EVERY_S = 2.0
INDEX_VERSION = "2"
"""2: a frame row per camera, and the camera of each row."""
NEEDS = ("frames",)
CLIP, FRAME = "clip", "frame"


def index_schema(image_dim: int, text_dim: int = TEXT_DIM) -> pa.Schema:
    clip_fields = [f for f in CLIP_SCHEMA if f.name != "day"]
    return pa.schema(
        [
            ("kind", pa.string()),
            *clip_fields,
            ("t", T),
            ("camera", pa.string()),
            ("day", pa.string()),
            ("description", pa.string()),
            ("text_embedding", pa.list_(pa.float32(), text_dim)),
            ("image_embedding", pa.list_(pa.float32(), image_dim)),
        ]
    )


def _clip_rows(clips: pa.Table) -> list[dict[str, Any]]:
    """CLIP_SCHEMA rows as dicts, times as int ns."""
    rows = clips.select([f.name for f in CLIP_SCHEMA]).to_pylist()
    starts = clips.column("start_t").cast(pa.int64()).to_pylist()
    ends = clips.column("end_t").cast(pa.int64()).to_pylist()
    for row, s, e in zip(rows, starts, ends, strict=True):
        row["start_t"], row["end_t"] = s, e
    return rows


def _scenario_clips(store: ObjectStore, day: str) -> pa.Table:
    try:
        from dataloop.curation.scenarios import read_scenario_index
    except ImportError:  # the scenario index is not there yet: frames only
        return CLIP_SCHEMA.empty_table()
    return read_scenario_index(store, [day])


def build_day_index(
    store: ObjectStore,
    day: str,
    clips: pa.Table | None = None,
    *,
    frame_every_s: float = FRAME_EVERY_S,
    image: ImageEncoder | None = None,
    text: TextEncoder | None = None,
) -> dict[str, Any]:
    """Embed the day's clips (default: the scenario index's clips of ``day``) and frames of
    the day's compliant drives; write the day's table and pointer. Skipped (``skipped: True``)
    when the inputs are those of the current pointer. Clips of drives that are not compliant
    are left out (only anonymised frames are ever shown). Returns the pointer record."""
    from dataloop.search.encoders import image_encoder, text_encoder

    image = image or image_encoder()
    text = text or text_encoder()
    clip_rows = _clip_rows(clips if clips is not None else _scenario_clips(store, day))
    states = {(s.vehicle, s.drive): s for s in ledger.drives_of_day(store, day)}
    entries = {k: s.compliance for k, s in sorted(states.items()) if framed(s)}
    for c in clip_rows:
        key = (c["vehicle_id"], c["drive_id"])
        entries.setdefault(key, {})
        if key not in states:  # (arrived on another day: one read)
            states[key] = ledger.drive(store, *key) or ledger.DriveState(*key)
    labels = {k: states[k].labels_key for k in entries}
    front = load_fleet()["front_camera"]
    inputs = sha256_json(
        {
            "version": INDEX_VERSION,
            "front_camera": front,
            "describer": DESCRIBER_VERSION,
            "encoders": [image.name, text.name],
            "every": frame_every_s,
            "clips": sorted(
                [c["clip_id"], c["drive_version"], c["start_t"], c["end_t"], c["scenario"]]
                + [c["tags"], c["road"], c["conditions"], c["severity"]]
                for c in clip_rows
            ),
            "drives": sorted([*k, e.get("frame_pack"), labels[k]] for k, e in entries.items()),
        }
    )
    current = read_json(store, L.embeddings_day_key(day))
    if current and current.get("inputs") == inputs:
        return {**current, "skipped": True}
    reuse = _Reuse.from_pointer(store, current, image.name, text.name)

    out: dict[str, list] = {f.name: [] for f in index_schema(image.dim, text.dim)}
    dropped, encoded_images, aside = 0, 0, []
    by_drive: dict[tuple[str, str], list[dict]] = {}
    for c in clip_rows:
        by_drive.setdefault((c["vehicle_id"], c["drive_id"]), []).append(c)
    for (vehicle, drive), entry in sorted(entries.items()):
        drive_clips = by_drive.get((vehicle, drive), [])
        try:
            pack = open_pack(store, vehicle, drive, entry or None)
        except LookupError:
            dropped += len(drive_clips)
            continue
        record = states[(vehicle, drive)].ingest or {}
        reason = lacking(record.get("tables", {}), NEEDS) or ("" if len(pack.t) else "no_frames")
        if reason:  # (no frame anonymised is no frame)
            aside.append([vehicle, drive, reason])
            continue
        views = {camera: pack.of(camera) for camera in pack.cameras()}
        key_view = pack.front(front)
        key_camera = str(key_view.camera[0]) if len(key_view.t) else front
        frames = (
            [(c, int(v.t[i])) for c, v in views.items() for i in v.every(frame_every_s)]
            if entry
            else []
        )
        keyframes = [
            (key_camera, int(key_view.t[key_view.nearest((c["start_t"] + c["end_t"]) // 2)]))
            for c in drive_clips
        ]
        vecs, n = _image_vectors(store, views, sorted(set(frames + keyframes)), image, reuse)
        encoded_images += n
        scene = (
            load_drive_scene(store, vehicle, drive, states[(vehicle, drive)])
            if drive_clips
            else None
        )
        meta = (scene.road, scene.conditions) if scene else _road_conditions(record)
        for camera, t in frames:
            _append(out, kind=FRAME, vehicle_id=vehicle, drive_id=drive, t=t, camera=camera,
                    day=day)  # fmt: skip
            out["road"][-1], out["conditions"][-1] = meta
            out["image_embedding"][-1] = vecs[(camera, t)]
        for c, (camera, t) in zip(drive_clips, keyframes, strict=True):
            _append(out, **c, kind=CLIP, t=t, camera=camera, description=describe(c, scene))
            out["image_embedding"][-1] = vecs[(camera, t)]
    clip_at = [i for i, k in enumerate(out["kind"]) if k == CLIP]
    texts = [out["description"][i] for i in clip_at]
    vectors, encoded_texts = reuse.texts(texts, text)
    for i, v in zip(clip_at, vectors, strict=True):
        out["text_embedding"][i] = v
    table = pa.Table.from_pydict(out, schema=index_schema(image.dim, text.dim))
    table = table.sort_by([(c, "ascending") for c in ("kind", "vehicle_id", "drive_id", "t")])
    data, sha = to_parquet(table)
    key = L.embeddings_key(day, sha)
    with contextlib.suppress(ObjectExists):  # same bytes, same key
        store.put(key, data)
    pointer = {
        "day": day,
        "key": key,
        "sha256": sha,
        "bytes": len(data),
        "rows": table.num_rows,
        "clips": len(clip_at),
        "frames": table.num_rows - len(clip_at),
        "drives": len(entries),
        "clips_not_compliant": dropped,
        "set_aside": aside,
        "image_encoder": image.name,
        "image_dim": image.dim,
        "text_encoder": text.name,
        "text_dim": text.dim,
        "frame_every_s": frame_every_s,
        "inputs": inputs,
        "encoded": {"images": encoded_images, "texts": encoded_texts},
    }
    write_json(store, L.embeddings_day_key(day), pointer)
    return {**pointer, "skipped": False}


def _append(out: dict[str, list], **values: Any) -> None:
    for name, column in out.items():
        column.append(values.get(name))


def _road_conditions(record: dict) -> tuple[str, str]:
    meta = record.get("log_metadata", {})
    return meta.get("road", "unknown"), meta.get("conditions", "unknown")


def _image_vectors(
    store: ObjectStore,
    views: dict[str, FramePack],
    frames: list[tuple[str, int]],
    image: ImageEncoder,
    reuse: _Reuse,
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """Image embeddings of the ``(camera, t)`` frames of one drive (``views``: its frames per
    camera): carried over or encoded."""
    vecs = {
        f: v
        for f in frames
        if (v := reuse.image(views[f[0]].vehicle, views[f[0]].drive, *f)) is not None
    }
    todo = [f for f in frames if f not in vecs]
    for camera in sorted({c for c, _ in todo}):
        view = views[camera]
        times = [t for c, t in todo if c == camera]
        jpegs = view.read(store, [view.nearest(t) for t in times])
        encoded = image.encode([decode_rgb(j) for j in jpegs])
        vecs.update(zip(((camera, t) for t in times), encoded, strict=True))
    return vecs, len(todo)


@dataclass
class _Reuse:
    """Embeddings of the day's previous table, when it was built with the same encoders."""

    images: dict[tuple[str, str, str, int], np.ndarray] = field(default_factory=dict)
    text_by_description: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_pointer(
        cls, store: ObjectStore, pointer: dict | None, image: str, text: str
    ) -> _Reuse:
        reuse = cls()
        if not pointer:
            return reuse
        old = pq.read_table(io.BytesIO(store.get(pointer["key"])))
        # a table from before several cameras sampled them mixed: nothing of it is reused
        if pointer.get("image_encoder") == image and "camera" in old.column_names:
            for v, d, c, t, e in zip(
                old.column("vehicle_id").to_pylist(),
                old.column("drive_id").to_pylist(),
                old.column("camera").to_pylist(),
                old.column("t").cast(pa.int64()).to_pylist(),
                _matrix(old.column("image_embedding"), pointer["image_dim"]),
                strict=True,
            ):
                reuse.images[(v, d, c, t)] = e
        if pointer.get("text_encoder") == text:
            clips = old.filter(pc.equal(old.column("kind"), CLIP))
            reuse.text_by_description = dict(
                zip(
                    clips.column("description").to_pylist(),
                    _matrix(clips.column("text_embedding"), pointer["text_dim"]),
                    strict=True,
                )
            )
        return reuse

    def image(self, vehicle: str, drive: str, camera: str, t: int) -> np.ndarray | None:
        return self.images.get((vehicle, drive, camera, t))

    def texts(self, texts: list[str], encoder: TextEncoder) -> tuple[list[np.ndarray], int]:
        todo = sorted({t for t in texts if t not in self.text_by_description})
        self.text_by_description.update(zip(todo, encoder.encode(todo), strict=True))
        return [self.text_by_description[t] for t in texts], len(todo)


def _matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """A fixed-size-list column without nulls as an (n, dim) float32 matrix."""
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    flat = pc.list_flatten(column.combine_chunks())
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


# -- loading every day's table for search -------------------------------------------------------
@dataclass
class SearchIndex:
    """Every indexed day in memory: clip rows with text vectors, image rows (frames and clip
    keyframes) with image vectors, and faiss indexes built on first use."""

    clips: pa.Table
    clip_vectors: np.ndarray
    images: pa.Table
    image_vectors: np.ndarray
    days: list[str]
    image_encoder: str | None
    text_encoder: str | None
    other_encoder_days: list[str]
    """Days indexed with another image encoder: their images are not comparable, left out."""
    store: ObjectStore | None = None
    sources: tuple[str, ...] = ()
    """The day tables it was loaded from: they name a trained index kept in the lake."""
    threshold: int = V.APPROX_THRESHOLD
    _faiss: dict[str, Any] = field(default_factory=dict)
    _by_drive: dict[tuple[str, str], list[int]] | None = None

    def faiss_index(self, which: str):
        """The faiss index over ``clips`` (text) or ``images``: flat, or IVF when large. A
        trained IVF is kept in the lake (``search/faiss/<hash of its inputs>.faiss``), so a
        one-shot query does not train it again."""
        if which in self._faiss:
            return self._faiss[which]
        vectors = self.clip_vectors if which == "clips" else self.image_vectors
        index = None
        if len(vectors) and (len(vectors) < self.threshold or self.store is None):
            index = V.build_index(vectors, self.threshold)
        elif len(vectors):
            key = L.faiss_key(sha256_json([which, self.image_encoder, self.sources])[:32])
            try:
                index = V.deserialize(self.store.get(key))
            except ObjectNotFound:
                index = V.ivf_index(vectors)
                with contextlib.suppress(ObjectExists):
                    self.store.put_stream(key, io.BytesIO(V.serialize(index)))
        self._faiss[which] = index
        return index

    def clips_of_drive(self, vehicle: str, drive: str) -> list[int]:
        """Row numbers in ``clips`` of one drive's clips."""
        if self._by_drive is None:
            self._by_drive = {}
            vs, ds = self.clips.column("vehicle_id").to_pylist(), self.clips.column("drive_id")
            for i, (v, d) in enumerate(zip(vs, ds.to_pylist(), strict=True)):
                self._by_drive.setdefault((v, d), []).append(i)
        return self._by_drive.get((vehicle, drive), [])


def indexed_days(store: ObjectStore) -> dict[str, dict]:
    """Every day's pointer, by day."""
    out = {}
    for info in store.list(L.EMBEDDING_DAYS):
        if L.is_embeddings_day_key(info.key):
            pointer = read_json(store, info.key)
            if pointer:
                out[pointer["day"]] = pointer
    return out


_LOADED: OrderedDict[tuple, SearchIndex] = OrderedDict()


def load_index(
    store: ObjectStore, days: list[str] | None = None, image_encoder: str | None = None
) -> SearchIndex:
    """The index over ``days`` (default: all) for queries encoded with ``image_encoder``
    (default: the configured one); cached per process until a day's table changes."""
    from dataloop.search.encoders import image_encoder as load_encoder

    wanted = image_encoder or load_encoder().name
    pointers = {d: p for d, p in indexed_days(store).items() if days is None or d in days}
    same = {d: p for d, p in sorted(pointers.items()) if p["image_encoder"] == wanted}
    cache_key = (store.url, wanted, tuple(p["key"] for p in same.values()))
    if cache_key in _LOADED:
        _LOADED.move_to_end(cache_key)
        return _LOADED[cache_key]
    tables = [_with_camera(pq.read_table(io.BytesIO(store.get(p["key"])))) for p in same.values()]
    image_dim = next((p["image_dim"] for p in same.values()), 1)
    table = pa.concat_tables(tables) if tables else index_schema(image_dim).empty_table()
    clips = table.filter(pc.equal(table.column("kind"), CLIP))
    meta = [c for c in table.column_names if not c.endswith("_embedding")]
    index = SearchIndex(
        clips=clips.select(meta),
        clip_vectors=_matrix(clips.column("text_embedding"), TEXT_DIM),
        images=table.select(meta),
        image_vectors=_matrix(table.column("image_embedding"), image_dim),
        days=sorted(same),
        image_encoder=wanted,
        text_encoder=next((p["text_encoder"] for p in same.values()), None),
        other_encoder_days=sorted(set(pointers) - set(same)),
        store=store,
        sources=tuple(p["key"] for p in same.values()),
    )
    _LOADED[cache_key] = index
    while len(_LOADED) > 2:
        _LOADED.popitem(last=False)
    return index


def _with_camera(table: pa.Table) -> pa.Table:
    """A day indexed before several cameras has no camera column: null (any camera)."""
    if "camera" in table.column_names:
        return table
    at = table.schema.get_field_index("t") + 1
    return table.add_column(at, "camera", pa.nulls(table.num_rows, pa.string()))


def index_code_version() -> str:
    """What the day index depends on besides its inputs, without loading a model: a Dagster
    asset's ``code_version`` (a new encoder or describer marks every day stale)."""
    from dataloop.search.encoders import image_encoder_name

    return f"search-{INDEX_VERSION}.describer-{DESCRIBER_VERSION}.image-{image_encoder_name()}"


def purge(store: ObjectStore, vehicle: str, drive: str | None = None) -> list[str]:
    """For a deletion request: delete every superseded day table that still holds rows of the
    vehicle (or drive), and every trained faiss index (caches that hold vectors of all
    drives; rebuilt on demand). The current day tables are rewritten by ``lineage.forget``."""
    current = {p["key"] for p in indexed_days(store).values()}
    deleted = []
    for info in list(store.list(L.EMBEDDING_DAYS)):
        if not info.key.endswith(".parquet") or info.key in current:
            continue
        table = pq.read_table(io.BytesIO(store.get(info.key)), columns=["vehicle_id", "drive_id"])
        mine = pc.equal(table["vehicle_id"], vehicle)
        if drive is not None:
            mine = pc.and_(mine, pc.equal(table["drive_id"], drive))
        if pc.any(mine).as_py():
            store.delete(info.key)
            deleted.append(info.key)
    for info in list(store.list(L.FAISS)):
        store.delete(info.key)
        deleted.append(info.key)
    _LOADED.clear()
    return deleted
