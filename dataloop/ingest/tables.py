"""The decoded lake tables: one Parquet file per drive and table, with these columns."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataloop.lake.hashing import sha256_bytes
from dataloop.lake.layout import table_key
from dataloop.lake.store import ObjectExists, ObjectStore

T = pa.timestamp("ns", tz="UTC")
_ID_COLUMNS = [("vehicle_id", pa.string()), ("drive_id", pa.string()), ("t", T)]

LOCATOR = [
    # where a blob (a camera image, a point cloud) lies in the raw MCAP: its chunk (the file
    # offset of the chunk's records, compression, sizes), the message record inside the
    # uncompressed chunk, and the blob's bytes inside that record (base64 text in JSON)
    ("chunk_offset", pa.int64()),
    ("chunk_compression", pa.string()),
    ("chunk_length", pa.int64()),
    ("chunk_uncompressed_size", pa.int64()),
    ("message_offset", pa.int64()),
    ("message_length", pa.int64()),
    ("data_offset", pa.int64()),
    ("data_length", pa.int64()),
    ("data_encoding", pa.string()),
]

SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema(_ID_COLUMNS + cols)
    for name, cols in {
        # Images stay inside the raw MCAP: a frame is located by its chunk (file offset of
        # the chunk's records, compression, sizes) and the message's offset inside the
        # uncompressed chunk records. ingest/frames.py reads one back and decodes it. The
        # jpeg_* columns describe the image's bytes whatever its format (a raw frame's are
        # checked against its size at ingest, so it is valid); pixel_encoding, step and
        # big_endian are those of a raw frame (format "raw"), null for an image file's.
        "frames": [
            ("camera", pa.string()),
            ("seq", pa.int64()),
            ("format", pa.string()),
            ("jpeg_bytes", pa.int64()),
            ("jpeg_sha256", pa.string()),
            ("jpeg_valid", pa.bool_()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("pixel_encoding", pa.string()),
            ("step", pa.int64()),
            ("big_endian", pa.bool_()),
            *LOCATOR,
        ],
        "gnss": [
            ("sensor", pa.string()),
            ("latitude", pa.float64()),
            ("longitude", pa.float64()),
            ("altitude", pa.float64()),
            ("horizontal_sigma_m", pa.float64()),
        ],
        "imu": [
            ("sensor", pa.string()),
            *[
                (f, pa.float64())
                for f in ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
            ],
        ],
        "vehicle_state": [
            ("speed_mps", pa.float64()),
            ("steering_angle_rad", pa.float64()),
            ("accelerator", pa.float64()),
            ("brake", pa.float64()),
            ("yaw_rate_radps", pa.float64()),
            ("gear", pa.string()),
            ("turn_signal", pa.string()),
        ],
        "objects": [
            ("object_id", pa.int64()),
            ("object_class", pa.string()),
            *[
                (f, pa.float64())
                for f in ("x", "y", "vx", "vy", "length", "width", "height", "heading")
            ],
            ("confidence", pa.float64()),
        ],
        "events": [("type", pa.string()), ("detail", pa.string())],
        "lanes": [
            (f, pa.float64())
            for f in ("lateral_offset_m", "heading_error_rad", "lane_width_m", "confidence")
        ],
        # written only when a drive has rows for them:
        "lidar_scans": [  # points stay in the raw MCAP, located like frames
            ("sensor", pa.string()),
            ("seq", pa.int64()),
            ("points", pa.int64()),
            ("point_step", pa.int64()),
            *[
                (f, pa.float64())
                for f in (
                    "range_min_m",
                    "range_max_m",
                    "range_mean_m",
                    "intensity_min",
                    "intensity_max",
                    "intensity_mean",
                )
            ],  # fmt: skip
            *LOCATOR,
        ],
        "calibrations": [  # a camera's intrinsics, as its driver publishes them
            ("camera", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("distortion_model", pa.string()),
            *[(m, pa.list_(pa.float64())) for m in ("k", "d", "r", "p")],
        ],
        "transforms": [
            ("parent_frame", pa.string()),
            ("child_frame", pa.string()),
            *[(f, pa.float64()) for f in ("x", "y", "z", "qx", "qy", "qz", "qw")],
        ],
        "odometry": [
            ("frame", pa.string()),
            *[(f, pa.float64()) for f in ("x", "y", "z", "yaw", "vx", "vy", "yaw_rate_radps")],
        ],
    }.items()
}

TABLES = tuple(SCHEMAS)
CORE_TABLES = ("frames", "gnss", "imu", "vehicle_state", "objects", "events", "lanes")
"""Written for every drive, empty or not; the others only when a drive has rows for them."""
SENSOR_COLUMN = {
    "frames": "camera",
    "lidar_scans": "sensor",
    "calibrations": "camera",
    "imu": "sensor",
    "gnss": "sensor",
}
"""Tables of several sensors of a kind: the column naming the sensor."""
ADAPTER_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in schema if f.name not in ("vehicle_id", "drive_id", "t"))
    for name, schema in SCHEMAS.items()
}
RAW_FRAME = ("width", "height", "pixel_encoding", "step", "big_endian")
"""What a raw frame's adapter gives besides its ``data`` (``big_endian`` may be left out)."""
ADAPTER_COLUMNS["frames"] = ("format", "data", *RAW_FRAME)
ADAPTER_COLUMNS["lidar_scans"] = ("data", "point_step", "fields", "big_endian")
"""What an adapter may fill, per table: every column, except that a frame gives its image's
``data`` and ``format`` (or, raw, its pixels' ``data`` and :data:`RAW_FRAME`), a scan its point
``data``, ``point_step`` and point ``fields`` (name, offset, datatype or type), and ingest
derives the rest."""
BLOB_NEEDS = {"frames": ("data",), "lidar_scans": ("data", "point_step")}
"""What an adapter of a table of blobs must give (and it makes one row per message: no rows)."""
TOGETHER = {"frames": RAW_FRAME[:4]}
"""Columns an adapter gives all of or none of: a raw frame's size, encoding and row step."""


def to_parquet(table: pa.Table) -> tuple[bytes, str]:
    """Deterministic zstd Parquet bytes and their SHA-256: a re-run writes the same bytes."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    return data, sha256_bytes(data)


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short hash of column names and types: a table whose fingerprint differs from the
    contract's has drifted."""
    return sha256_bytes(",".join(f"{f.name}:{f.type}" for f in schema).encode())[:16]


def put_table(store: ObjectStore, name: str, vehicle: str, drive: str, table: pa.Table) -> dict:
    """Write one drive's table to the lake, content-addressed (a re-run finds the same key);
    returns where it went and what it holds."""
    data, sha = to_parquet(table)
    key = table_key(name, vehicle, drive, sha)
    with contextlib.suppress(ObjectExists):  # same name, same hash: same bytes
        store.put(key, data)
    return {
        "key": key,
        "rows": table.num_rows,
        "sha256": sha,
        "bytes": len(data),
        "schema": schema_fingerprint(table.schema),
    }


def lacking(tables: Mapping[str, Mapping[str, Any]], needs: Iterable[str]) -> str | None:
    """Why a stage that reads the tables ``needs`` sets a drive aside: ``no_<table>`` for the
    first of them that the drive record's ``tables`` holds no rows of; ``None`` if none."""
    return next((f"no_{name}" for name in needs if not tables.get(name, {}).get("rows")), None)


def read_table(store: ObjectStore, key: str) -> pa.Table:
    """One Parquet object of the lake."""
    return pq.read_table(io.BytesIO(store.get(key)))
