"""Model bundles in the lake: ``models/driving/<version>/`` holds ``weights.bin`` (float32,
little endian), ``model.json`` (architecture, tensor index, normalisation, config) and
``model_card.json`` (dataset version, code version, seed, metrics). Content-addressed: the
version is the hash of the three files' hashes, so the same training writes the same bundle.
``models/driving/latest.json`` points at the newest bundle (the trigger compares against it)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataloop.lake.hashing import sha256_bytes, sha256_json
from dataloop.lake.layout import MODEL_LATEST_KEY, bundle_key
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectExists, ObjectNotFound, ObjectStore

FILES = ("weights.bin", "model.json", "model_card.json")


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def write_bundle(
    store: ObjectStore,
    weights: dict[str, np.ndarray],
    normalisation: dict,
    config: dict,
    card: dict,
) -> str:
    """Write a bundle immutably; returns its version (the bundle hash)."""
    index, blobs, offset = [], [], 0
    for name in sorted(weights):
        data = np.ascontiguousarray(weights[name], dtype="<f4").tobytes()
        index.append({"name": name, "shape": list(weights[name].shape), "offset": offset})
        blobs.append(data)
        offset += len(data)
    files = {
        "weights.bin": b"".join(blobs),
        "model.json": _json({"tensors": index, "normalisation": normalisation, "config": config}),
        "model_card.json": _json(card),
    }
    version = sha256_json({n: sha256_bytes(d) for n, d in files.items()})[:32]
    for name, data in files.items():
        with contextlib.suppress(ObjectExists):  # same version, same bytes
            store.put(bundle_key(version, name), data)
    return version


def set_latest(store: ObjectStore, version: str, card: dict) -> None:
    write_json(
        store,
        MODEL_LATEST_KEY,
        {
            "version": version,
            "dataset_version": card["dataset"]["version"],
            "dataset_seq": card["dataset"]["seq"],
        },
    )


def latest(store: ObjectStore) -> dict | None:
    return read_json(store, MODEL_LATEST_KEY)


@dataclass(frozen=True)
class Bundle:
    version: str
    weights: dict[str, np.ndarray]
    normalisation: dict
    config: dict
    card: dict


def _from_files(version: str, model_json: bytes, weights: bytes, card_json: bytes) -> Bundle:
    model = json.loads(model_json)
    tensors = {}
    for t in model["tensors"]:
        n = int(np.prod(t["shape"]))
        arr = np.frombuffer(weights, dtype="<f4", count=n, offset=t["offset"])
        tensors[t["name"]] = arr.reshape(t["shape"]).astype(np.float64)
    return Bundle(version, tensors, model["normalisation"], model["config"], json.loads(card_json))


def load_bundle(store: ObjectStore, version: str) -> Bundle:
    """A bundle by its version; raises LookupError when the lake has none."""
    try:
        model = store.get(bundle_key(version, "model.json"))
    except ObjectNotFound as err:
        raise LookupError(f"no model bundle {version!r} in the lake") from err
    weights, card = (store.get(bundle_key(version, n)) for n in ("weights.bin", "model_card.json"))
    return _from_files(version, model, weights, card)


def load_installed(folder: Path, version: str) -> Bundle:
    """A bundle from a release installed in a vehicle's folder (the same three files)."""
    model, weights, card = (
        (folder / n).read_bytes() for n in ("model.json", "weights.bin", "model_card.json")
    )
    return _from_files(version, model, weights, card)
