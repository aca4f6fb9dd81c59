"""The object-store interface every stage talks to, and the choice of backend.

``DATALOOP_LAKE`` picks the backend: a folder (the default, ``./.dataloop/lake``) or
``s3://bucket/prefix``. Objects are written once; the only mutable objects are small pointers,
replaced atomically with compare-and-swap.
"""

from __future__ import annotations

import os
import re
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


class LakeURLError(ValueError):
    """A lake URL that names no lake (``s3:/bucket``, ``s3://``, ``gs://…``)."""


class LakeNotFound(LookupError):
    """A local lake folder that does not exist, where a command only reads."""


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
LAKE_FORMS = "s3://bucket/prefix, file:///path or a folder"


def lake_url() -> str:
    """``$DATALOOP_LAKE`` (checked: ``LakeURLError``) or the default folder."""
    url = os.environ.get("DATALOOP_LAKE") or DEFAULT_LAKE
    check_lake_url(url, "DATALOOP_LAKE")
    return url


def check_lake_url(url: str, source: str = "lake") -> str:
    """``url`` if it names a lake; a ``LakeURLError`` that says which forms do, else. (An
    ``s3:/bucket`` would otherwise be taken for a local folder named ``s3:``.)"""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    name = scheme[1].lower()
    if name == "file":
        if not url.startswith("file://") or not url.removeprefix("file://"):
            raise LakeURLError(f"{source} {url!r}: a file URL is file:///path/to/lake")
        return url
    if name != "s3":
        raise LakeURLError(f"{source} {url!r}: unknown scheme {name!r}; allowed: {LAKE_FORMS}")
    if not url.startswith("s3://"):
        rest = url[3:].lstrip("/")
        raise LakeURLError(f"{source} {url!r}: an S3 lake is s3://bucket/prefix (s3://{rest}?)")
    bucket = url.removeprefix("s3://").partition("/")[0]
    if not bucket:
        raise LakeURLError(f"{source} {url!r}: no bucket; an S3 lake is s3://bucket/prefix")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise LakeURLError(
            f"{source} {url!r}: {bucket!r} is no S3 bucket name "
            "(3-63 characters: lower-case letters, digits, '.', '-')"
        )
    return url


def open_store(url: str | None = None, *, create: bool = True) -> ObjectStore:
    """The store for ``url`` (default: ``$DATALOOP_LAKE`` or ``./.dataloop/lake``).
    ``create=False`` (commands that only read): a missing local folder is ``LakeNotFound``
    instead of a new, empty lake."""
    url = check_lake_url(url) if url else lake_url()
    if url.startswith("s3://"):
        from dataloop.lake.s3 import S3Store

        return S3Store.from_url(url)
    from dataloop.lake.local import LocalStore

    folder = url.removeprefix("file://")
    if not create and not os.path.isdir(folder):
        raise LakeNotFound(
            f"no lake at {os.path.abspath(folder)} (set DATALOOP_LAKE to one; "
            "`dataloop fleet upload` or `dataloop demo` creates a local lake)"
        )
    return LocalStore(folder)
