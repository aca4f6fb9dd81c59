"""Where the lake's SQL runs: DuckDB in this process (the default), or a Spark cluster once
one machine is outgrown. ``DATALOOP_TABLE_ENGINE`` chooses; both read the same Parquet
objects and run the same SQL, written in DuckDB's dialect (``dataloop/lake/spark_sql.py``
carries it to Spark)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import duckdb
import pyarrow as pa

from dataloop.lake.query import register_table
from dataloop.lake.store import ObjectStore

ENGINE_ENV = "DATALOOP_TABLE_ENGINE"
ENGINES = ("duckdb", "spark")


class Tables(Protocol):
    """Named tables and views over the lake, and queries over them."""

    engine: str

    def parquet(self, name: str, keys: list[str], schema: pa.Schema) -> None:
        """``name`` reads the Parquet objects at ``keys`` (none: an empty ``schema`` table)."""

    def arrow(self, name: str, table: pa.Table) -> None:
        """``name`` reads a small table held in memory."""

    def view(self, name: str, sql: str) -> None:
        """``name`` is the query ``sql``."""

    def table(self, name: str, sql: str) -> None:
        """``name`` holds the rows of ``sql``, computed once for every query that reads it
        (a view that several queries share, or one query reads twice)."""

    def query(self, sql: str) -> pa.Table:
        """The rows of ``sql``: timestamps in ns (UTC), numbers as float64 or int64."""

    def keep_per_group(
        self, name: str, sql: str, keys: list[str], keep: Callable[[pa.Table], pa.Table]
    ) -> None:
        """``name`` holds the rows ``keep`` returns from each group of ``sql``'s rows that
        share ``keys`` (one call per group, its rows as ``query`` gives them; the same
        columns back). Python that SQL cannot say, run where the rows are."""


class DuckTables:
    engine = "duckdb"

    def __init__(self, store: ObjectStore | None = None) -> None:
        self.store = store
        self.con = duckdb.connect()

    def parquet(self, name: str, keys: list[str], schema: pa.Schema) -> None:
        if self.store is None:
            raise ValueError(f"{name}: these tables have no lake to read Parquet from")
        register_table(self.con, self.store, name, keys, schema)

    def arrow(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def view(self, name: str, sql: str) -> None:
        self.con.sql(f"CREATE VIEW {name} AS {sql}")

    def table(self, name: str, sql: str) -> None:
        self.con.sql(f"CREATE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def keep_per_group(
        self, name: str, sql: str, keys: list[str], keep: Callable[[pa.Table], pa.Table]
    ) -> None:
        rows = self.query(f"SELECT * FROM ({sql}) ORDER BY {', '.join(keys)}")
        values = list(zip(*(rows[k].to_pylist() for k in keys), strict=True))
        parts, start = [rows.schema.empty_table()], 0
        for i in range(1, len(values) + 1):
            if i == len(values) or values[i] != values[start]:
                parts.append(keep(rows.slice(start, i - start)).cast(rows.schema))
                start = i
        self.arrow(name, pa.concat_tables(parts))


def engine_name(value: str | None = None) -> str:
    """The engine ``value`` (default: ``DATALOOP_TABLE_ENGINE``, else duckdb), checked."""
    name = (value or os.environ.get(ENGINE_ENV) or "duckdb").strip().lower()
    if name not in ENGINES:
        raise ValueError(f"{ENGINE_ENV}={name!r}: expected one of {', '.join(ENGINES)}")
    return name


def open_tables(store: ObjectStore | None, engine: str | None = None) -> Tables:
    """An empty set of tables on ``engine`` (see ``engine_name``)."""
    if engine_name(engine) == "spark":
        from dataloop.lake.spark import SparkTables

        return SparkTables(store)
    return DuckTables(store)
