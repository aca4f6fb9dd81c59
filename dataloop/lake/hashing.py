"""SHA-256 everywhere: uploads, content-addressed objects and data versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1024 * 1024


def sha256_file(path: str | Path) -> tuple[str, int]:
    """(hex digest, size) of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    return sha256_bytes(canonical_json(value))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


class HashingReader:
    """A read-only stream wrapper that hashes and counts every byte read through it."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        """Read exactly ``n`` bytes unless the stream ends first (network streams may return
        short reads; record parsers expect full ones)."""
        if n is None or n < 0:
            data = self._stream.read()
        else:
            data = self._stream.read(n)
            if 0 < len(data) < n:
                parts = [data]
                got = len(data)
                while got < n and (more := self._stream.read(n - got)):
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        self._hash.update(data)
        self.bytes_read += len(data)
        return data

    def drain(self) -> None:
        """Read to the end so the digest covers the whole object."""
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
