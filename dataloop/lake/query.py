"""DuckDB over the lake's Parquet tables, local or S3, with no extension downloads.

Local files are read by DuckDB directly; S3 objects through pyarrow's S3 filesystem and
DuckDB's Arrow scan (httpfs is not bundled and cannot be downloaded in an air-gapped cluster).
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa

from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Store
from dataloop.lake.store import ObjectStore


def _s3_filesystem():
    from pyarrow import fs

    endpoint = os.environ.get("DATALOOP_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    scheme = "http" if endpoint and endpoint.startswith("http://") else "https"
    return fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
        scheme=scheme,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        # The same fault tolerance as the boto3 store (dataloop/lake/s3.py).
        retry_strategy=fs.AwsStandardS3RetryStrategy(
            max_attempts=int(os.environ.get("DATALOOP_S3_MAX_ATTEMPTS") or 10)
        ),
        connect_timeout=float(os.environ.get("DATALOOP_S3_CONNECT_TIMEOUT") or 5),
        request_timeout=float(os.environ.get("DATALOOP_S3_READ_TIMEOUT") or 30),
    )


def register_table(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStore,
    name: str,
    keys: list[str],
    schema: pa.Schema,
) -> None:
    """Make ``name`` a DuckDB view over the Parquet objects at ``keys`` (empty: ``schema``)."""
    if not keys:
        con.register(name, schema.empty_table())
    elif isinstance(store, LocalStore):
        paths = ", ".join(f"'{store.path(k)}'" for k in keys)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
    elif isinstance(store, S3Store):
        import pyarrow.dataset as ds

        dataset = ds.dataset(
            [f"{store.bucket}/{store.prefix}{k}" for k in keys],
            filesystem=_s3_filesystem(),
            format="parquet",
        )
        con.register(name, dataset)
    else:
        raise TypeError(f"no DuckDB reader for {type(store).__name__}")
