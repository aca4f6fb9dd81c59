"""Resources, chosen by environment from environment variables.

The lake's S3 settings are a resource of their own, ``lake_s3``: dagster-aws's ``S3Resource``
with the lake's retry, timeout and conditional-write settings added, which ``lake`` uses. The
UI's resource page shows each setting and, for one taken from the environment, the variable's
name (never a secret's value). The code location builds it from the environment, which the
processes a step starts (training through Pipes, the gate's worker pool) inherit and read
(``S3Options.from_env``): configure S3 through those variables, not only on the resource.
"""

import os

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource
from pydantic import Field

from dataloop.infra.executors import DISTRIBUTED, executor_kind
from dataloop.lake.layout import step_io_prefix
from dataloop.lake.s3 import S3Options, S3Store
from dataloop.lake.store import DEFAULT_LAKE, ObjectStore, check_lake_url, open_store


class LakeS3(S3Resource):
    """How the lake talks to S3 (``DATALOOP_S3_*``, ``AWS_*``; see dataloop/lake/s3.py)."""

    max_attempts: int = Field(
        default=S3Options.max_attempts,
        description="botocore's retries.max_attempts for each request, with exponential backoff.",
    )
    retry_mode: str = Field(
        default=S3Options.retry_mode,
        description="botocore's retry mode: standard, or adaptive (client-side rate limiting).",
    )
    connect_timeout_s: float = Field(
        default=S3Options.connect_timeout_s, description="Seconds to connect before a retry."
    )
    read_timeout_s: float = Field(
        default=S3Options.read_timeout_s, description="Seconds of a stalled read before a retry."
    )
    conditional_writes: bool = Field(
        default=True,
        description="Write-once and pointer swaps by If-None-Match/If-Match (off only for a "
        "server that ignores them, with a single writer per pointer).",
    )

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False  # ours, though it extends dagster-aws's

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url,
            region=self.region_name or S3Options.region,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
            session_token=self.aws_session_token,
            profile=self.profile_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            unsigned=self.use_unsigned_session,
            max_attempts=self.max_attempts,
            retry_mode=self.retry_mode,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            conditional_writes=self.conditional_writes,
        )

    def get_client(self):
        """The lake's boto3 client (retries, timeouts and path-style addressing included)."""
        return self.options().client()


class LakeResource(dg.ConfigurableResource):
    """The lake: ``DATALOOP_LAKE`` (a folder, default ./.dataloop/lake, or s3://bucket/prefix)."""

    url: str = Field(description="A folder, file:///path, or s3://bucket/prefix.")
    s3: LakeS3 | None = Field(
        default=None, description="The S3 settings of an s3:// lake (none: the environment's)."
    )

    def store(self) -> ObjectStore:
        url = check_lake_url(self.url)
        if url.startswith("s3://"):
            return S3Store.from_url(url, self.s3.options() if self.s3 else S3Options.from_env())
        return open_store(url)


# Each S3 setting an environment variable gives: (field, variables in order of precedence).
_S3_ENV: dict[str, tuple[str, ...]] = {
    "endpoint_url": ("DATALOOP_S3_ENDPOINT",),  # boto3 reads AWS_ENDPOINT_URL* itself
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "profile_name": ("AWS_PROFILE",),
}
_S3_ENV_NUMBERS = {
    "max_attempts": ("DATALOOP_S3_MAX_ATTEMPTS", int),
    "connect_timeout_s": ("DATALOOP_S3_CONNECT_TIMEOUT", float),
    "read_timeout_s": ("DATALOOP_S3_READ_TIMEOUT", float),
}


def s3_resource() -> LakeS3:
    """The S3 settings of the environment, each a ``dg.EnvVar`` so the UI names its source."""
    settings: dict = {}
    for field, names in _S3_ENV.items():
        name = next((n for n in names if os.environ.get(n)), None)
        if name:
            settings[field] = dg.EnvVar(name)
    for field, (name, kind) in _S3_ENV_NUMBERS.items():
        if os.environ.get(name):
            settings[field] = dg.EnvVar.int(name) if kind is int else kind(os.environ[name])
    if os.environ.get("DATALOOP_S3_RETRY_MODE"):
        settings["retry_mode"] = dg.EnvVar("DATALOOP_S3_RETRY_MODE")
    if os.environ.get("DATALOOP_S3_CONDITIONAL") == "0":
        settings["conditional_writes"] = False
    return LakeS3(**settings)


def lake_resource(s3: LakeS3 | None = None) -> LakeResource:
    s3 = s3 or s3_resource()
    if os.environ.get("DATALOOP_LAKE"):
        return LakeResource(url=dg.EnvVar("DATALOOP_LAKE"), s3=s3)
    # A relative default is pinned to an absolute path here, so every run process agrees.
    return LakeResource(url=os.path.abspath(DEFAULT_LAKE), s3=s3)


def lake_store() -> ObjectStore:
    """The lake as the ``lake`` resource opens it, from the environment: for code that runs
    outside a step (an automation condition's evaluation)."""
    with dg.build_resources({"lake": lake_resource()}) as built:
        return built.lake.store()


def step_io_manager(s3: LakeS3) -> dg.ConfigurableIOManager | None:
    """Where steps leave what the next step reads (ingest's shards: lists of uploads and their
    records): with a distributed executor and an S3 lake, the lake bucket's ``dagster/io/``
    (an aged zone), so steps on other machines read it; else ``None``, Dagster's default (a
    folder under ``DAGSTER_HOME``, which every step of a run on one machine shares)."""
    url = os.environ.get("DATALOOP_LAKE", "")
    if executor_kind() not in DISTRIBUTED or not url.startswith("s3://"):
        return None
    bucket, _, prefix = check_lake_url(url).removeprefix("s3://").partition("/")
    return S3PickleIOManager(
        s3_resource=s3, s3_bucket=bucket, s3_prefix=step_io_prefix(prefix.strip("/"))
    )


@dg.definitions
def resources() -> dg.Definitions:
    s3 = s3_resource()
    # Registered under its own key too, so the UI lists it as a resource of its own.
    resources = {"lake": lake_resource(s3), "lake_s3": s3}
    # Where work runs outside the code location: training (``python -m
    # dataloop.training.train``) and Spark applications (spark-submit). A subprocess here;
    # PipesK8sClient, PipesDatabricksClient or PipesEMRClient on a cluster (docs/scaling.md).
    resources["pipes_subprocess_client"] = dg.PipesSubprocessClient()
    if (io_manager := step_io_manager(s3)) is not None:
        resources["io_manager"] = io_manager
    return dg.Definitions(resources=resources)
