"""A clip: a stretch of one drive that a scenario query found, the unit of curation.

The scenario index, the search index and dataset manifests all carry clips in this shape.
"""

from __future__ import annotations

import pyarrow as pa

from dataloop.lake.hashing import sha256_bytes

T = pa.timestamp("ns", tz="UTC")

CLIP_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("vehicle_id", pa.string()),
        ("drive_id", pa.string()),
        ("drive_version", pa.string()),
        ("scenario", pa.string()),
        ("start_t", T),
        ("end_t", T),
        ("severity", pa.float64()),
        ("tags", pa.list_(pa.string())),
        ("road", pa.string()),
        ("conditions", pa.string()),
        ("day", pa.string()),
    ]
)
"""One row per clip. ``drive_version`` names the exact ingested, anonymised and labelled
state of the drive (``lake.ledger.DriveState.version``); ``severity`` is in [0, 1];
``day`` is the arrival day of the upload (the scenario index's partition)."""


def clip_id(vehicle: str, drive: str, scenario: str, start_ns: int) -> str:
    """Stable id: the same hit on the same drive is the same clip in every run."""
    return sha256_bytes(f"{vehicle}/{drive}/{scenario}/{start_ns}".encode())[:20]
