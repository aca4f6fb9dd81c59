"""The lake's tables on Spark (``DATALOOP_TABLE_ENGINE=spark``).

The session joins ``DATALOOP_SPARK_MASTER`` (a standalone master ``spark://host:7077``, or
``local[*]``, the default). Executors read the Parquet objects themselves, so the lake must be
a path every executor sees (a shared filesystem); an S3 lake is refused here, since reading it
needs ``s3a`` (hadoop-aws), which pyspark does not ship. Queries come in DuckDB's dialect and
are translated (``dataloop/lake/spark_sql.py``).

Spark's timestamps are microseconds: nanoseconds are truncated on the way in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from dataloop.lake.local import LocalStore
from dataloop.lake.spark_sql import to_spark
from dataloop.lake.store import ObjectStore

MASTER_ENV = "DATALOOP_SPARK_MASTER"


def master() -> str:
    return os.environ.get(MASTER_ENV) or "local[*]"


@cache
def session():
    """This process's Spark session on ``DATALOOP_SPARK_MASTER`` (made on first use)."""
    from pyspark.sql import SparkSession

    # Python on the executors (keep_per_group): this interpreter, unless PYSPARK_PYTHON names
    # the cluster's (pyspark reads only the variable)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master())
        .appName("dataloop")
        .config("spark.sql.session.timeZone", "UTC")
        # DuckDB's semantics: a division by zero is NULL, not an error
        .config("spark.sql.ansi.enabled", "false")
        # the lake's timestamps are ns; Spark reads them as longs and we convert (below)
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def submit_command(app: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command line, and the environment it adds, that runs the Python file
    ``app`` as a Spark application on ``DATALOOP_SPARK_MASTER``, with this interpreter (and so
    this installation of dataloop) as its driver."""
    import pyspark

    home = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)
    command = [str(home / "bin" / "spark-submit"), "--master", master(), "--name", name,
               "--conf", "spark.log.level=WARN", str(app)]  # fmt: skip
    return command, {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _to_spark_arrow(table: pa.Table) -> pa.Table:
    """Timestamps at the µs Spark holds."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _from_spark_arrow(table: pa.Table) -> pa.Table:
    """As DuckDB answers: timestamps in ns (UTC), decimals (Spark's literals) as float64."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.timestamp("ns", tz="UTC"))
        elif pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.float64())
        elif pa.types.is_integer(column.type):
            column = pc.cast(column, pa.int64())
        columns.append((name, column))
    return pa.table(dict(columns))


class SparkTables:
    engine = "spark"

    def __init__(self, store: ObjectStore | None = None) -> None:
        if store is not None and not isinstance(store, LocalStore):
            raise TypeError(
                f"DATALOOP_TABLE_ENGINE=spark reads a lake on a shared filesystem; "
                f"{type(store).__name__} needs s3a (hadoop-aws), which pyspark does not ship"
            )
        self.store = store
        self.spark = session()

    def parquet(self, name: str, keys: list[str], schema: pa.Schema) -> None:
        if not keys:
            self.arrow(name, schema.empty_table())
            return
        if self.store is None:
            raise ValueError(f"{name}: these tables have no lake to read Parquet from")
        frame = self.spark.read.parquet(*(str(self.store.path(k)) for k in keys))
        longs = {f.name for f in frame.schema.fields if f.dataType.typeName() == "long"}
        frame.selectExpr(
            *(
                f"timestamp_micros({f.name} DIV 1000) AS {f.name}"
                if pa.types.is_timestamp(f.type) and f.name in longs
                else f.name
                for f in schema
            )
        ).createOrReplaceTempView(name)

    def arrow(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(_to_spark_arrow(table)).createOrReplaceTempView(name)

    def view(self, name: str, sql: str) -> None:
        self.spark.sql(to_spark(sql)).createOrReplaceTempView(name)

    def table(self, name: str, sql: str) -> None:
        self.spark.sql(to_spark(sql)).cache().createOrReplaceTempView(name)

    def query(self, sql: str) -> pa.Table:
        return _from_spark_arrow(self.spark.sql(to_spark(sql)).toArrow())

    def keep_per_group(
        self, name: str, sql: str, keys: list[str], keep: Callable[[pa.Table], pa.Table]
    ) -> None:
        def on_executor(group: pa.Table) -> pa.Table:
            return _to_spark_arrow(keep(_from_spark_arrow(group))).cast(group.schema)

        frame = self.spark.sql(to_spark(sql))
        kept = frame.groupBy(*keys).applyInArrow(on_executor, frame.schema)
        kept.cache().createOrReplaceTempView(name)  # read more than once: keep runs once
