"""A seekable read-only file over a lake object, reading by ranges: indexed MCAP reads (the
summary, one attachment) fetch what they need instead of the whole log."""

from __future__ import annotations

import io

from dataloop.lake.store import ObjectStore


class RangedFile(io.RawIOBase):
    def __init__(self, store: ObjectStore, key: str):
        info = store.head(key)
        if info is None:
            raise FileNotFoundError(key)
        self._store, self._key, self._size, self._pos = store, key, info.size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._store.get_range(self._key, self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_ranged(store: ObjectStore, key: str, buffer_size: int = 256 * 1024) -> io.BufferedReader:
    return io.BufferedReader(RangedFile(store, key), buffer_size=buffer_size)
