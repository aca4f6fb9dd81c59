"""The lake's S3 settings are a Dagster resource: the UI shows where each comes from, and a run
talks to the server the resource names, over real HTTP (moto), with no S3 variable set."""

from __future__ import annotations

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
