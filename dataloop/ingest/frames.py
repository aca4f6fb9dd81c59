"""Read a camera frame (or a lidar scan's points) back from its raw log, by its location in
the frames (or lidar_scans) table: the bytes lie at ``data_offset`` in their message record
whatever the message's encoding (protobuf, CDR, ROS 1), or as base64 text there (JSON), so
no decoder is needed."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

import lz4.frame
import zstandard

from dataloop.lake.store import ObjectStore


def _chunk_records(store: ObjectStore, raw_key: str, row: dict[str, Any]) -> bytes:
    """The uncompressed records of the chunk holding ``row``'s frame."""
    compression = row["chunk_compression"]
    data = store.get_range(raw_key, row["chunk_offset"], row["chunk_length"])
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(
            data, max_output_size=row["chunk_uncompressed_size"]
        )
    if compression == "lz4":
        return lz4.frame.decompress(data)
    raise ValueError(f"unsupported chunk compression {compression!r}")


def _image(record: bytes, row: dict[str, Any]) -> bytes:
    at = row["data_offset"]
    data = record[at : at + row["data_length"]]
    return base64.b64decode(data) if row["data_encoding"] == "base64" else bytes(data)


def read_frame(store: ObjectStore, raw_key: str, row: dict[str, Any]) -> bytes:
    """The JPEG bytes of one frames-table row (the points of a lidar_scans row): one ranged
    read of its chunk (uncompressed chunks: of the message alone)."""
    if row["chunk_compression"] == "":
        start = row["chunk_offset"] + row["message_offset"]
        return _image(store.get_range(raw_key, start, row["message_length"]), row)
    off = row["message_offset"]
    return _image(_chunk_records(store, raw_key, row)[off : off + row["message_length"]], row)


def iter_frames(
    store: ObjectStore, raw_key: str, rows: Iterable[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """``(row, JPEG bytes)`` for frames-table rows in log order, reading each compressed
    chunk once (the frames ingest located: of a truncated log, those of its complete
    chunks)."""
    for _, group in groupby(rows, key=lambda r: r["chunk_offset"]):
        group = list(group)
        if group[0]["chunk_compression"] == "":
            yield from ((r, read_frame(store, raw_key, r)) for r in group)
            continue
        records = _chunk_records(store, raw_key, group[0])
        for r in group:
            off = r["message_offset"]
            yield r, _image(records[off : off + r["message_length"]], r)
