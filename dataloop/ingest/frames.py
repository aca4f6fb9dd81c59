"""Read one camera frame back from its raw log, by the location in the frames table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

import lz4.frame
import zstandard
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

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


def _jpeg(record: bytes) -> bytes:
    msg = CompressedImage()
    msg.ParseFromString(record[9 + 22 :])  # record header, then the message header
    return msg.data


def read_frame(store: ObjectStore, raw_key: str, row: dict[str, Any]) -> bytes:
    """The JPEG bytes of one frames-table row: one ranged read of its chunk (uncompressed
    chunks: of the message alone)."""
    if row["chunk_compression"] == "":
        start = row["chunk_offset"] + row["message_offset"]
        return _jpeg(store.get_range(raw_key, start, row["message_length"]))
    off = row["message_offset"]
    return _jpeg(_chunk_records(store, raw_key, row)[off : off + row["message_length"]])


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
            yield r, _jpeg(records[off : off + r["message_length"]])
