"""Dry-run one drive log through ingest's decoder: what would land where, without a lake.

``dataloop adapters check FILE`` prints it, so a team can see how its own logs map before it
uploads a single drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataloop.ingest.decode import DecodeError, decode_log


def check_log(path: Path) -> dict[str, Any]:
    """Decode ``path`` as ingest would; the report has rows per table, the channels no table
    maps, and the error that would quarantine the drive (``None`` when it would ingest)."""
    report: dict[str, Any] = {"file": str(path), "bytes": path.stat().st_size}
    try:
        with path.open("rb") as f:
            log = decode_log(f, vehicle="check", drive="check")
    except DecodeError as e:
        return {**report, "ok": False, "error": {"code": e.code, "detail": e.detail}}
    return {
        **report,
        "ok": True,
        "error": None,
        "sha256": log.sha256,
        "truncated": log.truncation_detail or None,
        "identity": {
            k: log.drive_metadata[k] for k in ("vehicle", "drive") if k in log.drive_metadata
        },
        "tables": {name: table.num_rows for name, table in sorted(log.tables.items())},
        "messages": dict(sorted(log.messages.items())),
        "unmapped_topics": log.unmapped,
    }
