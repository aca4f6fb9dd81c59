"""The lake's S3 settings are a Dagster resource: the UI shows where each comes from, and a run
talks to the server the resource names, over real HTTP (moto), with no S3 variable set."""

from __future__ import annotations

import os
import uuid

import boto3
import dagster as dg
import duckdb
import pyarrow as pa

from dataloop.defs.resources import LakeResource, LakeS3, lake_resource
from dataloop.ingest.tables import to_parquet
from dataloop.lake.query import register_table

S3_VARIABLES = (
    "DATALOOP_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "DATALOOP_S3_READ_TIMEOUT",
    "DATALOOP_S3_MAX_ATTEMPTS",
)


def _bucket(endpoint: str) -> str:
    name = f"res-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_the_resource_names_the_variables_it_reads(monkeypatch, s3_endpoint):
    monkeypatch.setenv("DATALOOP_LAKE", "s3://some-bucket/lake")
    monkeypatch.setenv("DATALOOP_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("DATALOOP_S3_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("DATALOOP_S3_READ_TIMEOUT", "7.5")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-shown")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    lake = lake_resource()
    assert isinstance(lake.url, dg.EnvVar) and lake.url.env_var_name == "DATALOOP_LAKE"
    s3 = lake.s3
    assert s3.endpoint_url.env_var_name == "DATALOOP_S3_ENDPOINT"
    # A secret is a reference to its variable in the definitions, never its value.
    assert s3.aws_secret_access_key.env_var_name == "AWS_SECRET_ACCESS_KEY"
    assert s3.aws_session_token is None
    assert s3.read_timeout_s == 7.5
    with dg.build_resources({"lake": lake}) as built:
        store = built.lake.store()
        assert store.options.endpoint_url == s3_endpoint
        assert store.options.max_attempts == 3
        assert store.client._client.meta.config.read_timeout == 7.5


def test_a_run_uses_the_resource_settings_not_the_environment(monkeypatch, s3_endpoint):
    for name in S3_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    bucket = _bucket(s3_endpoint)
    lake = LakeResource(
        url=f"s3://{bucket}/lake",
        s3=LakeS3(endpoint_url=s3_endpoint, region_name="us-east-1", read_timeout_s=11.0),
    )

    @dg.asset
    def written(lake: LakeResource) -> dg.MaterializeResult:
        store = lake.store()
        data, sha = to_parquet(pa.table({"x": [1, 2, 3]}))
        store.put(f"tables/x/{sha}.parquet", data)
        # The query path (pyarrow's S3 filesystem) reads the same settings.
        con = duckdb.connect()
        register_table(con, store, "x", [f"tables/x/{sha}.parquet"], pa.schema([("x", "int64")]))
        total = con.execute("SELECT sum(x) FROM x").fetchone()[0]
        timeout = store.options.read_timeout_s
        return dg.MaterializeResult(metadata={"sum": total, "timeout": timeout})

    result = dg.materialize([written], resources={"lake": lake})
    assert result.success
    meta = result.asset_materializations_for_node("written")[0].metadata
    assert meta["sum"].value == 6 and meta["timeout"].value == 11.0
    keys = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").list_objects_v2(
        Bucket=bucket
    )["Contents"]
    assert [k["Key"].split("/")[1] for k in keys] == ["tables"]


def test_the_ui_lists_the_s3_settings_with_their_variables(monkeypatch, s3_endpoint):
    """The code location's own resources, as the webserver's resource page gets them (the
    repository snapshot): ``lake_s3`` is a resource of its own that ``lake`` uses, each
    setting from the environment shown as its variable, no secret's value anywhere."""
    from dagster._core.remote_representation.external_data import (
        NestedResourceType,
        RepositorySnap,
    )

    from dataloop.defs.resources import resources

    monkeypatch.setenv("DATALOOP_LAKE", "s3://some-bucket/lake")
    monkeypatch.setenv("DATALOOP_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pLaNtEd-secret-value")
    repo = resources().get_repository_def()
    snap = RepositorySnap.from_def(repo)
    by_name = {r.name: r for r in snap.resources}
    assert {"lake", "lake_s3"} <= set(by_name)
    s3 = by_name["lake_s3"]
    assert not s3.dagster_maintained
    assert s3.configured_values["endpoint_url"].name == "DATALOOP_S3_ENDPOINT"
    assert s3.configured_values["aws_secret_access_key"].name == "AWS_SECRET_ACCESS_KEY"
    nested = by_name["lake"].nested_resources["s3"]
    assert (nested.type, nested.name) == (NestedResourceType.TOP_LEVEL, "lake_s3")
    assert "pLaNtEd-secret-value" not in repr(snap)


def test_steps_on_other_machines_exchange_outputs_through_the_lake_bucket(monkeypatch, s3_lake):
    """With a distributed executor and an S3 lake, step outputs go to the lake bucket's
    ``dagster/io/`` over real HTTP (moto), where a step on another machine reads them; on one
    machine, or with a local lake, Dagster's default stays."""
    from dagster_aws.s3 import S3PickleIOManager

    from dataloop.defs.resources import s3_resource, step_io_manager

    monkeypatch.setenv("DATALOOP_LAKE", s3_lake)
    assert step_io_manager(s3_resource()) is None  # in process by default
    monkeypatch.setenv("DATALOOP_EXECUTOR", "celery")
    io = step_io_manager(s3_resource())
    assert isinstance(io, S3PickleIOManager)
    bucket, _, prefix = s3_lake.removeprefix("s3://").partition("/")
    assert (io.s3_bucket, io.s3_prefix) == (bucket, f"{prefix}/dagster/io")

    @dg.op(out=dg.DynamicOut())
    def split():
        for k in range(2):
            yield dg.DynamicOutput([k, k + 10], mapping_key=f"s{k}")

    @dg.op
    def total(parts: list) -> int:
        return sum(sum(p) for p in parts)

    @dg.job
    def fan():
        total(split().collect())

    result = fan.execute_in_process(resources={"io_manager": io})
    assert result.success and result.output_for_node("total") == 22
    client = boto3.client("s3", endpoint_url=os.environ["DATALOOP_S3_ENDPOINT"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(k.startswith(f"{prefix}/dagster/io/storage/{result.run_id}/") for k in keys)
    monkeypatch.setenv("DATALOOP_LAKE", "/tmp/a-local-lake")
    assert step_io_manager(s3_resource()) is None  # a local lake is one machine's
