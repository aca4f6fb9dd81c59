"""A dry run over a lake: reads go to the real store, writes and deletes stay in memory.

Why a store and not a second code path: a command with ``--dry-run`` (``dataloop forget``)
then runs its real code, sees its own writes as it goes, and reports exactly what it would
have deleted and written, while the lake stays byte for byte as it was.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from dataloop.lake.hashing import sha256_bytes
from dataloop.lake.store import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    PreconditionFailed,
)


class DryRunStore(ObjectStore):
    """``base`` as it would look after the writes made through this store, which are kept
    in memory (``written``, ``deleted``) and never reach ``base``."""

    def __init__(self, base: ObjectStore) -> None:
        self.base = base
        self.url = base.url
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._gone: set[str] = set()
        self.written: set[str] = set()
        self.deleted: set[str] = set()
        """Keys of the real lake that the run deleted (objects it wrote and deleted again
        are in neither set)."""

    def _info(self, key: str, data: bytes, metadata: dict[str, str] | None) -> ObjectInfo:
        return ObjectInfo(key, len(data), datetime.now(UTC), sha256_bytes(data)[:32], metadata)

    # -- objects ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        if self.head(key) is not None:
            raise ObjectExists(key)
        info = self._info(key, data, metadata)
        self._objects[key] = (data, info)
        self.written.add(key)
        return info

    def open(self, key: str) -> BinaryIO:
        if key in self._objects:
            return io.BytesIO(self._objects[key][0])
        if key in self._gone:
            raise ObjectNotFound(key)
        return self.base.open(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if key in self._objects:
            return self._objects[key][0][start : start + length]
        if key in self._gone:
            raise ObjectNotFound(key)
        return self.base.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo | None:
        if key in self._objects:
            return self._objects[key][1]
        return None if key in self._gone else self.base.head(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        mine = {k: info for k, (_, info) in self._objects.items() if k.startswith(prefix)}
        theirs = (
            i
            for i in self.base.list(prefix, start_after)
            if i.key not in self._gone and i.key not in mine
        )
        after = start_after or ""
        yield from sorted(
            [*theirs, *(i for k, i in mine.items() if k > after)], key=lambda i: i.key
        )

    def delete(self, key: str) -> None:
        if key in self._objects:
            self._objects.pop(key)
            self.written.discard(key)
        if self.base.head(key) is not None and key not in self._gone:
            self._gone.add(key)
            self.deleted.add(key)

    # -- pointers --------------------------------------------------------------------------
    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        if key in self._objects:
            data, info = self._objects[key]
            return data, info.etag
        return None if key in self._gone else self.base.read_pointer(key)

    def swap_pointer(self, key: str, data: bytes, expected: str | None) -> str:
        current = self.read_pointer(key)
        if (current[1] if current else None) != expected:
            raise PreconditionFailed(key)
        info = self._info(key, data, None)
        self._objects[key] = (data, info)
        self.written.add(key)
        return info.etag

    # -- multipart: a dry run uploads nothing ------------------------------------------------
    def start_multipart(self, key: str, metadata: dict[str, str] | None = None) -> str:
        raise NotImplementedError("a dry run uploads nothing")

    def find_multipart(self, key: str) -> list[str]:
        return []

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo:
        raise NotImplementedError("a dry run uploads nothing")

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        return []

    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> ObjectInfo:
        raise NotImplementedError("a dry run uploads nothing")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        return None
