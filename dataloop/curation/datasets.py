"""Versioned datasets: a curation policy turns the scenario index into an immutable manifest
(one row per clip: drive, drive version, split, weight); every distinct manifest is a new
version with a readable sequence number."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataloop.curation.clips import CLIP_SCHEMA
from dataloop.ingest.tables import read_table, to_parquet
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.engines import Tables, open_tables
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


def _keep_distinct(group: pa.Table, gap_s: float) -> pa.Table:
    """One drive's clips of one scenario without their near-duplicates (``_dedup``)."""
    return pa.Table.from_pylist(_dedup(group.to_pylist(), gap_s), schema=group.schema)


def eligible_versions(store: ObjectStore, days: list[str]) -> pa.Table:
    """The drive versions a clip of ``days`` may enter with: approved and anonymised, and
    still the drive's version (``ledger.at_version``; a re-ingested or forgotten drive's
    clips drop out until it is mined anew). Reads the ledger's indexes of the days."""
    names = ("vehicle_id", "drive_id", "drive_version")
    rows = {
        (s.vehicle, s.drive, s.version)
        for day in days
        for s in ledger.drives_of_day(store, day)
        if ledger.at_version(s, s.version)
    }
    return pa.Table.from_pylist(
        [dict(zip(names, r, strict=True)) for r in sorted(rows)],
        schema=pa.schema([CLIP_SCHEMA.field(n) for n in names]),
    )


def _eligible_view(tables: Tables, store: ObjectStore, days: list[str]) -> None:
    """The view ``clips``: the clips of ``mined`` whose drive version may still enter."""
    tables.arrow("eligible_versions", eligible_versions(store, days))
    tables.view(
        "clips",
        """SELECT m.* FROM mined m JOIN eligible_versions e
        ON m.vehicle_id = e.vehicle_id AND m.drive_id = e.drive_id
        AND m.drive_version = e.drive_version""",
    )


def eligible(store: ObjectStore, clips: pa.Table) -> tuple[pa.Table, int]:
    """Only clips whose drive version may still enter (``eligible_versions``), and how many
    did not: the filter ``open_clips`` applies, over clips held in memory."""
    tables = open_tables(None, "duckdb")
    tables.arrow("mined", clips)
    _eligible_view(tables, store, sorted(set(clips["day"].to_pylist())))
    kept = tables.query("SELECT * FROM clips").cast(clips.schema)
    return kept, clips.num_rows - kept.num_rows


def open_clips(store: ObjectStore, days: list[str], engine: str | None = None) -> Tables:
    """The view ``clips`` on ``engine`` (``DATALOOP_TABLE_ENGINE``): the scenario index of
    ``days``, eligible drive versions only; ``mined`` holds them all."""
    tables = open_tables(store, engine)
    records = [read_json(store, L.day_index_key(day)) for day in days]
    tables.parquet("mined", [r["clips_key"] for r in records if r], CLIP_SCHEMA)
    _eligible_view(tables, store, days)
    return tables


def _counts(tables: Tables, view: str) -> dict[str, int]:
    rows = tables.query(f"SELECT scenario, count(*) AS n FROM {view} GROUP BY scenario")
    return dict(zip(rows["scenario"].to_pylist(), rows["n"].to_pylist(), strict=True))


def build(tables: Tables, policy: Policy) -> tuple[pa.Table, dict[str, Any]]:
    """Apply the policy to the view ``clips`` of ``tables`` on their engine: the manifest
    (sorted, so the same inputs give the same bytes) and a report of what each step kept.

    Steps: the mix's scenarios at ``min_severity``; near-duplicates dropped per drive and
    scenario (``_dedup``, where the rows are); the ``max_clips_per_category`` most severe
    per scenario; then weights and splits, from counts and keys small enough for here."""
    mix, raw = policy.mix, policy.raw
    tables.arrow(
        "policy_mix",
        pa.table({"scenario": list(mix)}, schema=pa.schema([CLIP_SCHEMA.field("scenario")])),
    )
    tables.view(
        "wanted",
        "SELECT c.* FROM clips c JOIN policy_mix p ON c.scenario = p.scenario "
        f"WHERE c.severity >= {float(raw.get('min_severity', 0.0))!r}",
    )
    gap_s = float(raw.get("near_duplicate_gap_s", 5.0))
    tables.keep_per_group(
        "distinct_clips",
        "SELECT * FROM wanted",
        ["vehicle_id", "drive_id", "scenario"],
        partial(_keep_distinct, gap_s=gap_s),
    )
    cap = int(raw.get("max_clips_per_category", 10**9))
    tables.view(
        "kept",
        f"""SELECT * FROM (
            SELECT *, row_number() OVER (
                PARTITION BY scenario ORDER BY severity DESC, clip_id) AS rank_in_scenario
            FROM distinct_clips) r
        WHERE rank_in_scenario <= {cap}""",
    )
    found, deduped, counts = (
        {s: n.get(s, 0) for s in mix}
        for n in (_counts(tables, v) for v in ("wanted", "distinct_clips", "kept"))
    )
    covered = {s: w for s, w in mix.items() if counts[s]}
    share, total = sum(covered.values()), sum(counts.values())
    # each category counts for its share of the mix, whatever its clip count
    weights = {s: round(covered[s] / share * total / counts[s], 6) for s in covered}
    tables.arrow(
        "weights",
        pa.table(
            {"scenario": list(weights), "weight": list(weights.values())},
            schema=pa.schema([CLIP_SCHEMA.field("scenario"), MANIFEST_SCHEMA.field("weight")]),
        ),
    )
    split = raw["split"]
    key = "k.vehicle_id" if split["by"] == "vehicle" else "k.vehicle_id || '/' || k.drive_id"
    keys = tables.query(f"SELECT DISTINCT {key} AS split_key FROM kept k")["split_key"]
    keys = keys.to_pylist()
    tables.arrow(
        "splits",
        pa.table(
            {
                "split_key": keys,
                "split": [split_of(k, split["salt"], split["fractions"]) for k in keys],
            },
            schema=pa.schema([("split_key", pa.string()), MANIFEST_SCHEMA.field("split")]),
        ),
    )
    columns = ", ".join(
        {"split": "s.split", "weight": "w.weight"}.get(n, f"k.{n}") for n in MANIFEST_SCHEMA.names
    )
    table = tables.query(
        f"SELECT {columns} FROM kept k JOIN weights w ON k.scenario = w.scenario "
        f"JOIN splits s ON {key} = s.split_key"
    ).cast(MANIFEST_SCHEMA)
    table = table.take(pc.sort_indices(table, [("clip_id", "ascending")]))
    drives = table.select(["vehicle_id", "drive_id"]).group_by(["vehicle_id", "drive_id"])
    report = {
        "found": found,
        "after_dedup": deduped,
        "kept": counts,
        "uncovered": sorted(s for s in mix if not counts[s]),
        "splits": {s: int(pc.sum(pc.equal(table["split"], s)).as_py() or 0) for s in SPLITS},
        "drives": drives.aggregate([]).num_rows,
    }
    return table, report


def curate(clips: pa.Table, policy: Policy) -> tuple[pa.Table, dict[str, Any]]:
    """``build`` over clips held in memory (DuckDB)."""
    tables = open_tables(None, "duckdb")
    tables.arrow("clips", clips)
    return build(tables, policy)


def build_dataset(
    store: ObjectStore, policy: Policy, engine: str | None = None, run_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the policy's dataset over every mined day on ``engine`` and publish it: the
    version record (an earlier one when the manifest is the latest already), and this
    build's report, with ``not_eligible`` (clips of drive versions that may no longer enter)
    and ``inputs`` (a digest of the mined days it read)."""
    from dataloop.curation.scenarios import index_days

    days = index_days(store)
    tables = open_clips(store, days, engine)
    manifest, report = build(tables, policy)
    report["not_eligible"] = tables.query(
        "SELECT (SELECT count(*) FROM mined) - (SELECT count(*) FROM clips) AS n"
    )["n"][0].as_py()
    report["inputs"] = sha256_json(days)[:16]
    record = publish(
        store,
        policy.name,
        manifest,
        {
            "policy": policy.raw,
            "policy_version": policy.version,
            "scenario_days": days,
            "report": report,
            "dagster_run_id": run_id,
        },
    )
    return record, report


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
