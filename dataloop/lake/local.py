"""The lake in a local folder: the zero-setup default.

Write-once uses ``os.link`` of a finished temp file (atomic, fails if the key exists);
pointers use ``os.replace`` under an advisory lock, so a reader never sees half an object.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dataloop.lake.store import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    PreconditionFailed,
)

_INTERNAL = ".dataloop-internal"


def check_key(key: str) -> str:
    """Reject keys that could leave the lake's folder or collide with internal files."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
        or parts[0] == _INTERNAL
    ):
        raise ValueError(f"invalid lake key {key!r}")
    return key


class LocalStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._internal = self.root / _INTERNAL
        (self._internal / "tmp").mkdir(parents=True, exist_ok=True)
        (self._internal / "multipart").mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- objects -------------------------------------------------------------------------
    def _publish(self, tmp: Path, key: str, metadata: dict[str, str] | None) -> ObjectInfo:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise ObjectExists(key) from None
        finally:
            tmp.unlink(missing_ok=True)
        if metadata:
            self._meta_path(key).parent.mkdir(parents=True, exist_ok=True)
            self._meta_path(key).write_text(json.dumps(metadata))
        info = self.head(key)
        assert info is not None
        return info

    def _tmp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self._internal / "tmp")
        os.close(fd)
        return Path(name)

    def put(self, key, data, *, metadata=None):
        check_key(key)
        if self.path(key).exists():
            raise ObjectExists(key)
        tmp = self._tmp()
        tmp.write_bytes(data)
        return self._publish(tmp, key, metadata)

    def put_stream(self, key, stream, *, metadata=None):
        check_key(key)
        if self.path(key).exists():
            raise ObjectExists(key)
        tmp = self._tmp()
        with tmp.open("wb") as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)
        return self._publish(tmp, key, metadata)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def get_range(self, key, start, length):
        with self.open(key) as f:
            f.seek(start)
            return f.read(length)

    def _meta_path(self, key: str) -> Path:
        return self._internal / "meta" / f"{key}.json"

    def head(self, key):
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        meta_path = self._meta_path(key)
        metadata = json.loads(meta_path.read_text()) if meta_path.exists() else None
        return ObjectInfo(
            key=key,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
            metadata=metadata,
        )

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix names, then order keys exactly as S3 does.
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / base_dir if base_dir else self.root
        if not top.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d != _INTERNAL]
                rel = ""
            for name in filenames:
                key = f"{rel}/{name}" if rel else name
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        for key in sorted(keys):
            info = self.head(key)
            if info is not None:
                yield info

    def delete(self, key):
        self.path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)

    # -- pointers --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, key: str):
        lock_path = self._internal / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()}"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_pointer(self, key):
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def swap_pointer(self, key, data, expected):
        dest = self.path(key)
        with self._lock(key):
            current = self.read_pointer(key)
            if (current[1] if current else None) != expected:
                raise PreconditionFailed(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp()
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        return hashlib.sha256(data).hexdigest()

    # -- multipart -------------------------------------------------------------------------
    def _upload_dir(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self._internal / "multipart" / upload_id

    def start_multipart(self, key, metadata=None):
        check_key(key)
        upload_id = uuid.uuid4().hex
        d = self._upload_dir(upload_id)
        d.mkdir(parents=True)
        (d / "upload.json").write_text(json.dumps({"key": key, "metadata": metadata or {}}))
        return upload_id

    def find_multipart(self, key):
        found = []
        for d in (self._internal / "multipart").iterdir():
            spec = d / "upload.json"
            if spec.exists() and json.loads(spec.read_text())["key"] == key:
                found.append((spec.stat().st_mtime_ns, d.name))
        return [upload_id for _, upload_id in sorted(found)]

    def _spec(self, key: str, upload_id: str) -> dict:
        spec_path = self._upload_dir(upload_id) / "upload.json"
        if not spec_path.exists():
            raise ObjectNotFound(f"no multipart upload {upload_id} for {key}")
        spec = json.loads(spec_path.read_text())
        if spec["key"] != key:
            raise ValueError(f"upload {upload_id} is for {spec['key']}, not {key}")
        return spec

    def put_part(self, key, upload_id, number, data):
        self._spec(key, upload_id)
        part = self._upload_dir(upload_id) / f"part-{number:05d}"
        tmp = self._tmp()
        tmp.write_bytes(data)
        os.replace(tmp, part)
        return PartInfo(number, len(data), hashlib.md5(data).hexdigest())

    def list_parts(self, key, upload_id):
        self._spec(key, upload_id)
        parts = []
        for p in sorted(self._upload_dir(upload_id).glob("part-*")):
            data = p.read_bytes()
            parts.append(PartInfo(int(p.name[5:]), len(data), hashlib.md5(data).hexdigest()))
        return parts

    def complete_multipart(self, key, upload_id, parts):
        spec = self._spec(key, upload_id)
        d = self._upload_dir(upload_id)
        tmp = self._tmp()
        with tmp.open("wb") as out:
            for part in sorted(parts, key=lambda p: p.number):
                with (d / f"part-{part.number:05d}").open("rb") as f:
                    shutil.copyfileobj(f, out, 1024 * 1024)
        try:
            info = self._publish(tmp, key, spec["metadata"] or None)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return info

    def abort_multipart(self, key, upload_id):
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)
