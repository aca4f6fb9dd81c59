"""DuckDB over the lake's Parquet tables, local or S3, with no extension downloads.

Local files are read by DuckDB directly; S3 objects through pyarrow's S3 filesystem and
DuckDB's Arrow scan (httpfs is not bundled and cannot be downloaded in an air-gapped cluster).
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa

from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Options, S3Store
from dataloop.lake.store import ObjectStore


def _s3_filesystem(options: S3Options):
    from pyarrow import fs

    endpoint = (
        options.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )  # boto3 reads the last two itself
    keys = bool(options.access_key_id and options.secret_access_key) and not options.unsigned
    scheme = "http" if endpoint and endpoint.startswith("http://") else "https"
    return fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
        scheme=scheme,
        region=options.region,
        # Explicit keys only as a pair (else the SDK's own chain), none for an unsigned session.
        access_key=options.access_key_id if keys else None,
        secret_key=options.secret_access_key if keys else None,
        session_token=options.session_token if keys else None,
        anonymous=options.unsigned,
        # The same fault tolerance as the boto3 store (dataloop/lake/s3.py).
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=options.max_attempts),
        connect_timeout=options.connect_timeout_s,
        request_timeout=options.read_timeout_s,
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
            filesystem=_s3_filesystem(store.options),
            format="parquet",
        )
        con.register(name, dataset)
    else:
        raise TypeError(f"no DuckDB reader for {type(store).__name__}")
