"""Read a camera frame (or a lidar scan's points) back from its raw log, by its location in
the frames (or lidar_scans) table: the bytes lie at ``data_offset`` in their message record
whatever the message's encoding (protobuf, CDR, ROS 1), or as base64 text there (JSON), so
no decoder is needed; and turn a frame's bytes into pixels (:func:`frame_image`, the one
place that does: compressed or raw)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator, Mapping
from itertools import groupby
from typing import Any

import lz4.frame
import numpy as np
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


RAW = "raw"
"""The ``format`` of a frame of uncompressed pixels (``pixel_encoding``, ``width``, ``height``
and ``step`` say how they lie); any other format is an image file's (jpeg, png)."""
RAW_ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"), "rgba8": (4, 1, "rgb"), "bgr8": (3, 1, "bgr"), "bgra8": (4, 1, "bgr"),
    "rgb16": (3, 2, "rgb"), "rgba16": (4, 2, "rgb"), "bgr16": (3, 2, "bgr"),
    "bgra16": (4, 2, "bgr"), "mono8": (1, 1, "mono"), "mono16": (1, 2, "mono"),
    "8UC1": (1, 1, "mono"), "8UC3": (3, 1, "bgr"), "8UC4": (4, 1, "bgr"),
    "16UC1": (1, 2, "mono"),
}  # fmt: skip
"""Pixel encodings of a raw frame (the names of ROS ``sensor_msgs/Image`` and Foxglove
``RawImage``) -> (channels, bytes per channel, channel order); 3- and 4-channel ``8UC`` are
BGR(A), as cv_bridge reads them."""
MAX_PIXELS = 8192 * 8192
"""Largest frame turned into pixels: a hostile width and height (or JPEG header) cannot make
a reader allocate more."""


def raw_layout(encoding: Any, width: Any, height: Any, step: Any, length: int) -> tuple[int, int]:
    """(channels, bytes per channel) of a raw image of ``length`` bytes, checked against its
    claimed size; raises ValueError saying what does not fit (nothing is allocated)."""
    if encoding not in RAW_ENCODINGS:
        known = ", ".join(RAW_ENCODINGS)
        raise ValueError(f"unknown pixel encoding {encoding!r} (known: {known})")
    channels, size, _ = RAW_ENCODINGS[encoding]
    width, height, step = int(width or 0), int(height or 0), int(step or 0)
    if width <= 0 or height <= 0:
        raise ValueError(f"a raw image of {width}x{height} pixels has no pixels")
    if width * height > MAX_PIXELS:
        raise ValueError(f"a raw image of {width}x{height} pixels is over {MAX_PIXELS} pixels")
    if step < width * channels * size:
        raise ValueError(
            f"step {step} is shorter than a row of {width} {encoding} pixels "
            f"({width * channels * size} bytes)"
        )
    if length < height * step:
        raise ValueError(
            f"{length} bytes of pixels, fewer than height x step = {height} x {step} "
            f"({height * step} bytes)"
        )
    return channels, size


def decode_image(data: bytes) -> np.ndarray:
    """An image file's bytes (JPEG, PNG) as an RGB uint8 array (height, width, 3); raises
    ValueError when they do not decode or claim over :data:`MAX_PIXELS`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"a {img.width}x{img.height} image is over {MAX_PIXELS} pixels")
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"undecodable image: {err}") from err


def frame_image(row: Mapping[str, Any], data: bytes) -> np.ndarray:
    """A frames-table row's pixels, from its bytes (:func:`read_frame`), as an RGB uint8
    array (height, width, 3): an image file decoded, or raw pixels laid out by the row's
    ``pixel_encoding``, ``width``, ``height``, ``step`` (row padding skipped) and
    ``big_endian``; BGR is reordered, alpha dropped, mono repeated in three channels and
    16-bit values scaled to 8 bits (the high byte). Raises ValueError on bytes that do not
    fit their description."""
    if row.get("format") != RAW:
        return decode_image(data)
    encoding, width, height, step = (
        row["pixel_encoding"], row["width"], row["height"], row["step"]
    )  # fmt: skip
    channels, size = raw_layout(encoding, width, height, step, len(data))
    rows = np.frombuffer(data, np.uint8, height * step).reshape(height, step)
    pixels = rows[:, : width * channels * size]
    if size == 2:
        pixels = (pixels.view(">u2" if row.get("big_endian") else "<u2") >> 8).astype(np.uint8)
    pixels = pixels.reshape(height, width, channels)
    order = RAW_ENCODINGS[encoding][2]
    if order == "mono":
        return np.repeat(pixels, 3, axis=2)
    return np.array(pixels[..., 2::-1] if order == "bgr" else pixels[..., :3], order="C")
