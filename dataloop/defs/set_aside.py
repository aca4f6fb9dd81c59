"""A stage's set-aside drives (those lacking a table the stage needs), shown in the UI."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg


def set_aside_metadata(rows: Iterable[tuple[str, str, str]]) -> dict[str, dg.MetadataValue]:
    """``set_aside`` (a count) and ``set_aside_drives`` (vehicle, drive, reason: a table)."""
    rows = sorted(rows)
    return {
        "set_aside": dg.MetadataValue.int(len(rows)),
        "set_aside_drives": dg.MetadataValue.table(
            [dg.TableRecord({"vehicle": v, "drive": d, "reason": r}) for v, d, r in rows[:200]],
            schema=dg.TableSchema(
                columns=[dg.TableColumn(c, "string") for c in ("vehicle", "drive", "reason")]
            ),
        ),
    }
