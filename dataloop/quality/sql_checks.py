"""Expectations as DuckDB SQL: one row per drive with its unexpected-row count.

Every query runs over views named after the lake tables, holding the hour's drives, with a
``row`` column (the row's position in its drive's file: the order it was logged in). In a
table of several sensors of a kind (``frames``: its cameras), order and rate are each
sensor's own: two cameras at 10 Hz interleave, and neither is out of order or at 20 Hz.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dataloop.ingest.tables import SENSOR_COLUMN
from dataloop.quality.suites import Expectation

_FLOAT = (pa.float16(), pa.float32(), pa.float64())


def _in_drive(table: str) -> str:
    """The window of one drive's rows in log order (one sensor's, in a table of several)."""
    sensor = f", {SENSOR_COLUMN[table]}" if table in SENSOR_COLUMN else ""
    return f"(PARTITION BY vehicle_id, drive_id{sensor} ORDER BY row)"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _per_drive(table: str, unexpected: str, observed: str = "NULL", source: str | None = None):
    return (
        f"SELECT vehicle_id, drive_id, count(*) FILTER (WHERE {unexpected}) AS unexpected, "
        f"{observed} AS observed FROM {source or table} GROUP BY 1, 2"
    )


def to_sql(e: Expectation, schema: pa.Schema) -> str:
    """The SQL for an expectation (its own ``sql``, or the translation of its type)."""
    if e.sql:
        return e.sql
    k, t = e.kwargs, e.table
    col = k.get("column")
    is_float = col is not None and schema.field(col).type in _FLOAT
    ordered = f"(SELECT *, lag({col}) OVER {_in_drive(t)} AS prev FROM {t})"
    if e.type == "expect_column_values_to_be_between":
        conds = []
        if k.get("min_value") is not None:
            conds.append(f"{col} < {_literal(k['min_value'])}")
        if k.get("max_value") is not None:
            conds.append(f"{col} > {_literal(k['max_value'])}")
        nan = f" AND NOT isnan({col})" if is_float else ""
        return _per_drive(t, f"({' OR '.join(conds)}){nan}", f"max({col})")
    if e.type == "expect_column_values_to_not_be_null":
        nan = f" OR isnan({col})" if is_float else ""
        return _per_drive(t, f"{col} IS NULL{nan}")
    if e.type == "expect_column_values_to_be_in_set":
        values = ", ".join(_literal(v) for v in k["value_set"])
        return _per_drive(t, f"{col} NOT IN ({values})")
    if e.type == "expect_column_values_to_be_increasing":
        op = "<=" if k.get("strictly") else "<"
        return _per_drive(t, f"prev IS NOT NULL AND {col} {op} prev", source=ordered)
    if e.type == "expect_compound_columns_to_be_unique":
        cols = ", ".join(k["column_list"])
        return (
            f"SELECT vehicle_id, drive_id, coalesce(sum(n) FILTER (WHERE n > 1), 0) AS unexpected, "
            f"max(n) AS observed FROM (SELECT {cols}, count(*) AS n FROM {t} GROUP BY ALL) "
            "GROUP BY 1, 2"
        )
    if e.type == "rate_within":
        hz, tol = k["hz"], k["tolerance"]
        rate = "(count(*) - 1) / nullif(epoch(max(t)) - epoch(min(t)), 0)"
        sensor = f", {SENSOR_COLUMN[t]}" if t in SENSOR_COLUMN else ""
        per_sensor = f"SELECT vehicle_id, drive_id, {rate} AS r FROM {t} GROUP BY 1, 2{sensor}"
        return (  # per drive: how many sensors are off their rate, and the farthest one's
            f"SELECT vehicle_id, drive_id, count(*) FILTER (WHERE abs(r - {hz}) > {tol * hz}) "
            f"AS unexpected, arg_max(r, abs(r - {hz})) AS observed FROM ({per_sensor}) "
            "GROUP BY 1, 2"
        )
    if e.type == "max_gap_below":
        gap = f"(SELECT *, epoch(t) - epoch(lag(t) OVER {_in_drive(t)}) AS gap FROM {t})"
        return _per_drive(t, f"gap > {k['seconds']}", "max(gap)", source=gap)
    raise ValueError(f"{e.key}: no DuckDB translation for {e.type!r}")
