"""The object-store interface every stage talks to, and the choice of backend.

``DATALOOP_LAKE`` picks the backend: a folder (the default, ``./.dataloop/lake``) or
``s3://bucket/prefix``. Objects are written once; the only mutable objects are small pointers,
replaced atomically with compare-and-swap.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

DEFAULT_LAKE = "./.dataloop/lake"
PART_SIZE = 8 * 1024 * 1024
"""Multipart part size (S3 requires at least 5 MiB for every part but the last)."""


class ObjectExists(Exception):
    """A write-once object already exists; nothing was written."""


class ObjectNotFound(KeyError):
    """The object does not exist."""


class PreconditionFailed(Exception):
    """A pointer changed since it was read: the compare-and-swap lost, nothing was written."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    """UTC, timezone-aware."""
    etag: str = ""
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class PartInfo:
    number: int
    size: int
    etag: str


class ObjectStore(ABC):
    """A flat key space of immutable objects plus atomically replaced pointers."""

    url: str

    # -- objects -------------------------------------------------------------------------
    @abstractmethod
    def put(self, key: str, data: bytes, *, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Write a small object once. Raises ObjectExists if the key is taken."""

    def put_stream(
        self, key: str, stream: BinaryIO, *, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        """Write an object of any size from a stream, once, without holding it in memory."""
        first = _read_full(stream, PART_SIZE)
        if len(first) < PART_SIZE:
            return self.put(key, first, metadata=metadata)
        upload_id = self.start_multipart(key, metadata=metadata)
        try:
            parts = [self.put_part(key, upload_id, 1, first)]
            while chunk := _read_full(stream, PART_SIZE):
                parts.append(self.put_part(key, upload_id, len(parts) + 1, chunk))
            return self.complete_multipart(key, upload_id, parts)
        except BaseException:
            self.abort_multipart(key, upload_id)
            raise

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader over the object (never read whole into memory by the store)."""

    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @abstractmethod
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in lexicographic key order, strictly after ``start_after``."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    # -- pointers --------------------------------------------------------------------------
    @abstractmethod
    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        """The pointer's bytes and a version token for ``swap_pointer``, or None."""

    @abstractmethod
    def swap_pointer(self, key: str, data: bytes, expected: str | None) -> str:
        """Replace the pointer atomically if its token is still ``expected`` (None: absent).

        Returns the new token; raises PreconditionFailed when another writer got there first.
        """

    # -- multipart uploads (the vehicle side resumes these) --------------------------------
    @abstractmethod
    def start_multipart(self, key: str, metadata: dict[str, str] | None = None) -> str: ...

    @abstractmethod
    def find_multipart(self, key: str) -> list[str]:
        """Upload ids of unfinished multipart uploads of ``key``, oldest first."""

    @abstractmethod
    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo: ...

    @abstractmethod
    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]: ...

    @abstractmethod
    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> ObjectInfo:
        """Assemble the parts into ``key``, once. Raises ObjectExists if the key is taken."""

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None: ...


def _read_full(stream: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping over short reads."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def lake_url() -> str:
    return os.environ.get("DATALOOP_LAKE") or DEFAULT_LAKE


def open_store(url: str | None = None) -> ObjectStore:
    """The store for ``url`` (default: ``$DATALOOP_LAKE`` or ``./.dataloop/lake``)."""
    url = url or lake_url()
    if url.startswith("s3://"):
        from dataloop.lake.s3 import S3Store

        return S3Store.from_url(url)
    from dataloop.lake.local import LocalStore

    return LocalStore(url.removeprefix("file://"))
