"""Versioned datasets: a curation policy turns the scenario index into an immutable manifest
(one row per clip: drive, drive version, split, weight); every distinct manifest is a new
version with a readable sequence number."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataloop.curation.clips import CLIP_SCHEMA
from dataloop.ingest.tables import read_table, to_parquet
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_bytes, sha256_json
from dataloop.lake.pointers import put_json, read_json, update_json
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.rules import load, rules_dir
from dataloop.rules import schemas as S

SPLITS = ("train", "val", "test")
MANIFEST_SCHEMA = pa.schema(
    [
        *[CLIP_SCHEMA.field(c) for c in ("clip_id", "vehicle_id", "drive_id", "drive_version")],
        CLIP_SCHEMA.field("scenario"),
        CLIP_SCHEMA.field("start_t"),
        CLIP_SCHEMA.field("end_t"),
        CLIP_SCHEMA.field("severity"),
        ("split", pa.string()),
        ("weight", pa.float64()),
        *[CLIP_SCHEMA.field(c) for c in ("tags", "road", "conditions", "day")],
    ]
)


@dataclass(frozen=True)
class Policy:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def version(self) -> str:
        return sha256_json(self.raw)[:16]

    @property
    def mix(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.raw["mix"].items()}


def policy_file() -> Path:
    return rules_dir() / "curation" / "training.yaml"


def load_policy(path: Path | None = None, data: bytes | None = None) -> Policy:
    """The curation policy (or ``data``, its bytes), validated (``RulesError``)."""
    return Policy(load(path or policy_file(), S.Curation, data))


def split_of(key: str, salt: str, fractions: dict[str, float]) -> str:
    """The split a vehicle or drive belongs to: a hash, so it never moves between versions."""
    u = int(sha256_bytes(f"{salt}/{key}".encode())[:12], 16) / 16**12
    total, edge = sum(fractions.values()), 0.0
    for split in SPLITS:
        edge += fractions.get(split, 0.0) / total
        if u < edge:
            return split
    return SPLITS[-1]


def _gap_s(a: dict, b: dict) -> float:
    """Seconds between two clips' spans (negative when they overlap)."""
    return (max(a["start_t"], b["start_t"]) - min(a["end_t"], b["end_t"])).total_seconds()


def _dedup(clips: list[dict], gap_s: float) -> list[dict]:
    """Near-duplicates are clips of one scenario on one drive that come within ``gap_s`` of
    each other (the same manoeuvre seen twice): the most severe stays."""
    kept: dict[tuple, list[dict]] = {}
    for c in sorted(clips, key=lambda c: (-c["severity"], c["clip_id"])):
        mine = kept.setdefault((c["vehicle_id"], c["drive_id"], c["scenario"]), [])
        if all(_gap_s(c, k) > gap_s for k in mine):
            mine.append(c)
    return [c for group in kept.values() for c in group]


def curate(clips: pa.Table, policy: Policy) -> tuple[pa.Table, dict[str, Any]]:
    """Apply the policy: the manifest (sorted, so the same inputs give the same bytes) and
    a report of what each step kept."""
    mix = policy.mix
    rows = [
        c
        for c in clips.to_pylist()
        if c["scenario"] in mix and c["severity"] >= policy.raw.get("min_severity", 0.0)
    ]
    found = {s: sum(c["scenario"] == s for c in rows) for s in mix}
    rows = _dedup(rows, float(policy.raw.get("near_duplicate_gap_s", 5.0)))
    deduped = {s: sum(c["scenario"] == s for c in rows) for s in mix}
    cap = int(policy.raw.get("max_clips_per_category", 10**9))
    kept: list[dict] = []
    for s in mix:
        mine = sorted(
            (c for c in rows if c["scenario"] == s), key=lambda c: (-c["severity"], c["clip_id"])
        )
        kept += mine[:cap]
    counts = {s: sum(c["scenario"] == s for c in kept) for s in mix}
    covered = {s: w for s, w in mix.items() if counts[s]}
    share = sum(covered.values())
    split = policy.raw["split"]
    for c in kept:
        # each category counts for its share of the mix, whatever its clip count
        c["weight"] = round(covered[c["scenario"]] / share * len(kept) / counts[c["scenario"]], 6)
        key = c["vehicle_id"] if split["by"] == "vehicle" else f"{c['vehicle_id']}/{c['drive_id']}"
        c["split"] = split_of(key, split["salt"], split["fractions"])
    table = pa.Table.from_pylist(kept, schema=MANIFEST_SCHEMA)
    table = table.take(pc.sort_indices(table, [("clip_id", "ascending")]))
    report = {
        "found": found,
        "after_dedup": deduped,
        "kept": counts,
        "uncovered": sorted(s for s in mix if not counts[s]),
        "splits": {s: int(pc.sum(pc.equal(table["split"], s)).as_py() or 0) for s in SPLITS},
        "drives": len({(c["vehicle_id"], c["drive_id"]) for c in kept}),
    }
    return table, report


def eligible(store: ObjectStore, clips: pa.Table) -> tuple[pa.Table, int]:
    """Only clips of drives that are still approved and anonymised, in the very version the
    clip was mined from (a re-ingested or forgotten drive drops out until it is mined anew).
    Reads the ledger's indexes of the clips' days: one request per hour."""
    states = {
        (s.vehicle, s.drive): s
        for day in sorted(set(clips["day"].to_pylist()))
        for s in ledger.drives_of_day(store, day)
    }
    mask = [
        ledger.at_version(states.get((v, d)), version)
        for v, d, version in zip(
            clips["vehicle_id"].to_pylist(),
            clips["drive_id"].to_pylist(),
            clips["drive_version"].to_pylist(),
            strict=True,
        )
    ]
    kept = clips.filter(pa.array(mask, pa.bool_()))
    return kept, clips.num_rows - kept.num_rows


# -- versions in the lake ---------------------------------------------------------------


def publish(store: ObjectStore, name: str, manifest: pa.Table, info: dict[str, Any]) -> dict:
    """Store the manifest immutably and make it the next version, unless it is the latest
    already (the same content is the same version). Returns the version record."""
    data, sha = to_parquet(manifest)
    version = sha[:32]
    manifest_key = L.dataset_manifest_key(name, version)
    with contextlib.suppress(ObjectExists):
        store.put(manifest_key, data)
    while True:
        latest = read_json(store, L.dataset_latest_key(name))
        if latest and latest["version"] == version:
            return read_json(store, L.dataset_version_key(name, latest["seq"]))
        seq = (latest["seq"] if latest else 0) + 1
        record = {
            "name": name,
            "seq": seq,
            "version": version,
            "manifest_key": manifest_key,
            "clips": manifest.num_rows,
            "created_at": datetime.now(UTC).isoformat(),
            "parent": latest["version"] if latest else None,
            **info,
        }
        try:
            put_json(store, L.dataset_version_key(name, seq), record)
        except ObjectExists:
            taken = read_json(store, L.dataset_version_key(name, seq))
            if taken is None or taken["version"] != version:
                continue  # another writer took this number: look again
            record = taken  # ours landed (a lost reply, or a concurrent twin)
        update_json(
            store,
            L.dataset_latest_key(name),
            lambda _, r=record: {"seq": r["seq"], "version": r["version"]},
        )
        return record


def versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    """Every version of a dataset, oldest first, each with its ``superseded`` record if any."""
    out = []
    for info in store.list(L.dataset_versions_prefix(name)):
        record = read_json(store, info.key)
        record["superseded"] = read_json(store, L.dataset_superseded_key(name, record["version"]))
        out.append(record)
    return sorted(out, key=lambda r: r["seq"])


def dataset_names(store: ObjectStore) -> list[str]:
    return L.dataset_names([i.key for i in store.list(L.ALL_DATASETS)])


def find_version(store: ObjectStore, version: str) -> dict[str, Any] | None:
    """A version record by its hash (a unique prefix is enough) or by ``name:seq``."""
    for name in dataset_names(store):
        for record in versions(store, name):
            if record["version"].startswith(version) or f"{name}:{record['seq']}" == version:
                return record
    return None


def read_manifest(store: ObjectStore, record: dict[str, Any]) -> pa.Table:
    return read_table(store, record["manifest_key"])


# -- the training dataset ---------------------------------------------------------------
def training_dataset_name() -> str:
    """The name of the dataset training reads: the curation policy's (``curation/training.yaml``),
    so the name is declared in one place."""
    return load_policy().name


def latest_training_dataset(store: ObjectStore) -> dict[str, Any] | None:
    """The latest training dataset's pointer (``seq``, ``version``); ``None`` before the first."""
    return read_json(store, L.dataset_latest_key(training_dataset_name()))


def held_out_clips(store: ObjectStore) -> pa.Table:
    """The held-out clips (val and test splits) of the latest training dataset, by clip id;
    empty before the first. Simulation scores on them: a model never trained on them."""
    pointer = latest_training_dataset(store)
    if pointer is None:
        return MANIFEST_SCHEMA.empty_table()
    manifest = read_manifest(store, find_version(store, pointer["version"]))
    held = manifest.filter(pc.not_equal(manifest["split"], "train"))
    return held.take(pc.sort_indices(held, [("clip_id", "ascending")]))
