"""The lineage graph. Dataset versions are the roots that name drives (their manifests);
every later artefact (a model, a release) records the versions it was made from as a node
``lineage/<kind>/<version>.json``, written once."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq

from dataloop.curation import datasets as D
from dataloop.lake.layout import node_key, nodes_prefix
from dataloop.lake.pointers import put_json, read_json
from dataloop.lake.store import ObjectExists, ObjectStore

KINDS = ("dataset", "model", "release")


def record_node(
    store: ObjectStore, kind: str, version: str, inputs: list[dict[str, str]], **info: Any
) -> dict[str, Any]:
    """Record that ``kind``@``version`` was made from ``inputs`` (``[{kind, version}]``).
    Immutable: recording the same node again keeps the first record."""
    if kind not in KINDS[1:]:
        raise ValueError(f"lineage nodes are {KINDS[1:]}; datasets are their own records")
    node = {"kind": kind, "version": version, "inputs": inputs, **info}
    try:
        put_json(store, node_key(kind, version), node)
    except ObjectExists:
        return read_json(store, node_key(kind, version))
    return node


def nodes(store: ObjectStore, kind: str) -> list[dict[str, Any]]:
    return [read_json(store, i.key) for i in store.list(nodes_prefix(kind))]


def _find(store: ObjectStore, kind: str, version: str) -> dict[str, Any]:
    if kind == "dataset":
        record = D.find_version(store, version)
    else:
        record = next((n for n in nodes(store, kind) if n["version"].startswith(version)), None)
    if record is None:
        raise LookupError(f"no {kind} {version!r} in the lake")
    return record


def backward(store: ObjectStore, kind: str, version: str) -> dict[str, Any]:
    """The chain from ``kind``@``version`` back to its dataset versions, and the drives (with
    the drive version and clip count) that those datasets hold."""
    start = _find(store, kind, version)
    chain, frontier, dataset_records = [], [(kind, start)], []
    while frontier:
        k, record = frontier.pop()
        if k == "dataset":
            dataset_records.append(record)
            continue
        chain.append({"kind": k, "version": record["version"]})
        frontier += [(i["kind"], _find(store, i["kind"], i["version"])) for i in record["inputs"]]
    drives: dict[tuple[str, str, str], int] = {}
    for record in dataset_records:
        manifest = D.read_manifest(store, record)
        for v, d, dv in zip(
            manifest["vehicle_id"].to_pylist(),
            manifest["drive_id"].to_pylist(),
            manifest["drive_version"].to_pylist(),
            strict=True,
        ):
            drives[(v, d, dv)] = drives.get((v, d, dv), 0) + 1
    return {
        "of": {"kind": kind, "version": start["version"]},
        "chain": chain,
        "datasets": [_dataset_summary(r) for r in dataset_records],
        "drives": [
            {"vehicle": v, "drive": d, "drive_version": dv, "clips": n}
            for (v, d, dv), n in sorted(drives.items())
        ],
    }


def _dataset_summary(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "dataset",
        "name": record["name"],
        "seq": record["seq"],
        "version": record["version"],
        "superseded": bool(record.get("superseded")),
    }


def datasets_using(store: ObjectStore, vehicle: str, drive: str | None = None) -> list[dict]:
    """Every dataset version whose manifest holds a clip of the vehicle (or of one drive)."""
    found = []
    for name in D.dataset_names(store):
        for record in D.versions(store, name):
            table = pq.read_table(
                io.BytesIO(store.get(record["manifest_key"])), columns=["vehicle_id", "drive_id"]
            )
            pairs = zip(table["vehicle_id"].to_pylist(), table["drive_id"].to_pylist(), strict=True)
            if any(v == vehicle and (drive is None or d == drive) for v, d in pairs):
                found.append(record)
    return found


def forward(store: ObjectStore, vehicle: str, drive: str | None = None) -> dict[str, Any]:
    """Everything made from the vehicle's (or the drive's) data: dataset versions, then the
    models trained on them, then the releases of those models."""
    datasets = datasets_using(store, vehicle, drive)
    used = {("dataset", r["version"]) for r in datasets}
    out: dict[str, Any] = {
        "of": {"vehicle": vehicle, "drive": drive},
        "datasets": [_dataset_summary(r) for r in datasets],
    }
    for kind in KINDS[1:]:
        hits = [
            n
            for n in nodes(store, kind)
            if any((i["kind"], i["version"]) in used for i in n["inputs"])
        ]
        used |= {(kind, n["version"]) for n in hits}
        out[f"{kind}s"] = [{"kind": kind, "version": n["version"]} for n in hits]
    return out
