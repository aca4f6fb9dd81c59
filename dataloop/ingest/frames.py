"""Read one camera frame back from its raw log, by the location in the frames table."""

from __future__ import annotations

from typing import Any

import lz4.frame
import zstandard
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

from dataloop.lake.store import ObjectStore


def read_frame(store: ObjectStore, raw_key: str, row: dict[str, Any]) -> bytes:
    """The JPEG bytes of one frames-table row: one ranged read of its chunk (uncompressed
    chunks: of the message alone)."""
    compression = row["chunk_compression"]
    if compression == "":
        start = row["chunk_offset"] + row["message_offset"]
        record = store.get_range(raw_key, start, row["message_length"])
    else:
        data = store.get_range(raw_key, row["chunk_offset"], row["chunk_length"])
        if compression == "zstd":
            data = zstandard.ZstdDecompressor().decompress(
                data, max_output_size=row["chunk_uncompressed_size"]
            )
        elif compression == "lz4":
            data = lz4.frame.decompress(data)
        else:
            raise ValueError(f"unsupported chunk compression {compression!r}")
        off = row["message_offset"]
        record = data[off : off + row["message_length"]]
    msg = CompressedImage()
    msg.ParseFromString(record[9 + 22 :])  # record header, then the message header
    return msg.data
