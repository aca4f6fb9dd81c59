"""The data loop end to end (upload, ingest, quality, labels, mining, dataset) against any
lake, with client-side re-runs where a real deployment has them, and an audit of the result:
every committed drive processed exactly once, nothing lost, nothing duplicated."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq

from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.pointers import read_json
from dataloop.lake.store import ObjectStore, open_store

T = TypeVar("T")


@dataclass
class LoopRun:
    """What it took: client-side re-runs of uploads and Dagster runs after failures."""

    upload_retries: int = 0
    run_retries: int = 0
    errors: list[str] = field(default_factory=list)


def again(fn: Callable[[], T], run: LoopRun, attr: str, attempts: int = 6) -> T:
    """Call ``fn`` until it succeeds, as a vehicle re-tries an upload or Dagster a run."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - any failure is re-run, and recorded
            if attempt == attempts - 1:
                raise
            setattr(run, attr, getattr(run, attr) + 1)
            run.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
            time.sleep(0.1)
    raise AssertionError("unreachable")


def upload_logs(store: ObjectStore, logs: list[tuple[str, str, Path]], run: LoopRun) -> None:
    """Upload every (vehicle, drive, log) as a vehicle does: re-try until committed."""
    from dataloop.fleet.uploader import upload_drive

    for vehicle, drive, path in logs:
        again(
            lambda v=vehicle, d=drive, p=path: upload_drive(store, p, vehicle=v, drive=d),
            run,
            "upload_retries",
        )


def process_lake(url: str, run: LoopRun, *, curate: bool = True, instance=None) -> None:
    """Every hourly partition (ingest .. labels), then mining per day and the dataset, each
    Dagster run re-tried after a failure (a run retry policy does the same)."""
    import dagster as dg

    from dataloop.defs.curation.assets import scenario_index, training_dataset
    from dataloop.defs.resources import LakeResource, s3_resource
    from dataloop.ingest.hour import arrival_hours, upload_days
    from tests.helpers import hourly_assets, pipes_client

    store = open_store(url)
    instance = instance or dg.DagsterInstance.ephemeral()
    hourly = hourly_assets()
    assets = [*hourly, scenario_index, training_dataset]
    # The S3 settings as the code location makes them: from the environment, secrets as EnvVars.
    resources = {"lake": LakeResource(url=url, s3=s3_resource()), **pipes_client()}
    hours = again(lambda: arrival_hours(store, upload_days(store)), run, "run_retries")

    def materialize(selection: list, partition: str | None) -> None:
        result = dg.materialize(
            assets,
            partition_key=partition,
            instance=instance,
            resources=resources,
            selection=selection,
        )
        assert result.success

    for hour in hours:
        selection = [a for i, a in enumerate(hourly) if i not in (0, 3)]
        again(lambda h=hour, s=selection: materialize(s, h), run, "run_retries")
    if curate:
        for day in sorted({h[:10] for h in hours}):
            again(lambda d=day: materialize([scenario_index], d), run, "run_retries")
        again(lambda: materialize([training_dataset], None), run, "run_retries")


@dataclass
class Audit:
    expected: int
    uploaded: int = 0
    processed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "drives": self.expected,
            "uploaded": self.uploaded,
            "processed": self.processed,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "partial": len(self.partial),
        }


def audit(store: ObjectStore, logs: list[tuple[str, str, Path]], *, curate: bool = True) -> Audit:
    """Check the lake against the logs the fleet committed."""
    from dataloop.lake.hashing import sha256_file

    result = Audit(expected=len(logs))
    manifests = Counter()
    for o in store.list(L.RAW_UPLOADS):
        parsed = L.parse_raw_key(o.key)
        if parsed and o.key.endswith(".manifest.json"):
            manifests[(parsed.vehicle, parsed.drive)] += 1
    hour_entries = Counter()
    for o in store.list(L.HOUR_RECORDS):
        for d in read_json(store, o.key)["drives"]:
            hour_entries[(d["vehicle"], d["drive"])] += 1
    ledger_entries = Counter((s.vehicle, s.drive) for s in ledger.all_drives(store))
    for vehicle, drive, path in logs:
        ident = f"{vehicle}/{drive}"
        record = ledger.section(store, vehicle, drive, ledger.INGEST)
        if manifests[(vehicle, drive)]:
            result.uploaded += 1
        if max(manifests[(vehicle, drive)], hour_entries[(vehicle, drive)]) > 1 or (
            ledger_entries[(vehicle, drive)] > 1  # a drive is in one hour's ledger index
        ):
            result.duplicated.append(f"{ident}: committed or indexed twice")
        if record is None or record.get("status") not in ("ingested", "recovered"):
            result.lost.append(f"{ident}: no usable drive record")
            continue
        if record["sha256"] != sha256_file(path)[0]:
            result.partial.append(f"{ident}: the lake holds other bytes than the vehicle sent")
        ok = True
        for name, info in record["tables"].items():
            prefix = L.drive_tables_prefix(name, vehicle, drive)
            objects = [o.key for o in store.list(prefix)]
            if objects != [info["key"]]:
                result.duplicated.append(f"{ident}: {name} has {len(objects)} objects")
                ok = False
                continue
            table = pq.read_table(io.BytesIO(store.get(info["key"])))
            if table.num_rows != info["rows"]:
                result.partial.append(f"{ident}: {name} has {table.num_rows} rows")
                ok = False
        result.processed += ok
    if curate:
        from dataloop.curation import datasets as D
        from dataloop.curation.scenarios import index_days, read_scenario_index

        clips = read_scenario_index(store, index_days(store))
        ids = clips.column("clip_id").to_pylist()
        result.duplicated += [f"clip {c} mined twice" for c, n in Counter(ids).items() if n > 1]
        for name in D.dataset_names(store):
            versions = D.versions(store, name)
            contents = Counter(v["version"] for v in versions)
            result.duplicated += [f"dataset {name} {v} twice" for v, n in contents.items() if n > 1]
            manifest = D.read_manifest(store, versions[-1])
            rows = Counter(manifest.column("clip_id").to_pylist())
            result.duplicated += [f"dataset row {c} twice" for c, n in rows.items() if n > 1]
    return result
