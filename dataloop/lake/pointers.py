"""JSON in the lake: small pointers (the only mutable objects, replaced atomically) and
immutable records written once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dataloop.lake.store import ObjectNotFound, ObjectStore, PreconditionFailed


def read_json(store: ObjectStore, key: str) -> Any | None:
    """A JSON object or pointer, or None when absent."""
    try:
        return json.loads(store.get(key))
    except ObjectNotFound:
        return None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, default=str).encode()


def put_json(store: ObjectStore, key: str, value: Any) -> None:
    """Write an immutable JSON record once; raises ``ObjectExists`` when the key is taken."""
    store.put(key, _dumps(value))


def update_json(
    store: ObjectStore, key: str, update: Callable[[Any | None], Any], attempts: int = 20
) -> Any:
    """Read-modify-write a JSON pointer with compare-and-swap; retried when another writer won."""
    for _ in range(attempts):
        current = store.read_pointer(key)
        value = update(json.loads(current[0]) if current else None)
        data = _dumps(value)
        try:
            store.swap_pointer(key, data, current[1] if current else None)
            return value
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{key}: gave up after {attempts} concurrent updates")


def write_json(store: ObjectStore, key: str, value: Any) -> None:
    """Replace a JSON pointer atomically with ``value``."""
    update_json(store, key, lambda _: value)
