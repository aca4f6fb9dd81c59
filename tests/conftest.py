"""Shared fixtures: the lake on its backends (a folder; S3 over real HTTP on moto and on a real
Ceph radosgw that enforces IAM), and drive logs."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Store
from dataloop.lake.store import ObjectStore
from tests.rabbitmq import rabbitmq  # noqa: F401 - a session fixture, shared here
from tests.radosgw import radosgw, radosgw_lake  # noqa: F401 - session fixtures, shared here

SLOW_FIRST = (
    "test_demo",
    "test_demo_dev",
    "test_curation",
    "test_search",
    "test_cli",
    "test_spark",
    "test_training",
    "test_postgres_storage",
    "test_infra",
    "test_crash",
    "test_labeling",
    "test_simulator",
    "test_backfill",
    "test_ui_browser",
    "test_tick_faults",
    "test_batched_sim",
    "test_storage_faults",
)
"""The longest modules (measured, slowest first). pytest-xdist (pyproject's addopts: two
workers, whole modules each) hands them out first, so that no worker is left alone with a long
one at the end: the rest fill in behind them, in collection order."""

os.environ.setdefault("DATALOOP_WORKERS", "1")
"""Per-drive work runs in process in the suite (and in the processes it starts): pytest-xdist
already keeps both cores busy, and many tests hand a stage a store that wraps another (to count
or break its calls), which only the in-process path sees. tests/test_workers.py runs the pool
(and compares it with this path); set the variable to run the whole suite on the pool."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the order of the files
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: modules stay whole


@pytest.fixture(scope="session")
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    """An S3-compatible server over real HTTP: MinIO when DATALOOP_TEST_S3_ENDPOINT is set
    (with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for it), else moto's server mode."""
    return os.environ.get("DATALOOP_TEST_S3_ENDPOINT") or request.getfixturevalue("moto_endpoint")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server over real HTTP, once per session: S3, and SQS for the upload queue."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; returns its s3:// URL and points the environment at the server."""
    monkeypatch.setenv("DATALOOP_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/dataloop"


def store_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh lake on ``kind``: "local", "s3" (moto) or "radosgw"."""
    if kind == "local":
        return LocalStore(tmp_path / "lake")
    lake = "s3_lake" if kind == "s3" else "radosgw_lake"
    return S3Store.from_url(request.getfixturevalue(lake))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same tests run against a local folder and an S3 server (the lake contract and the
    uploader override this with every kind in ``STORE_KINDS``, radosgw included)."""
    return store_of(request.param, request, tmp_path)


STORE_KINDS = ["local", "s3", "radosgw"]
"""Every backend: the lake contract and the uploader run on all of them."""


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def make_log(logs_dir: Path):
    """Write (and cache) a short synthetic drive log in the contract."""
    made: dict[tuple, Path] = {}

    def make(vehicle: str = "veh-1", drive: str = "drive-1", seconds: float = 4.0, seed: int = 0):
        key = (vehicle, drive, seconds, seed)
        if key not in made:
            made[key] = write_synthetic_drive(
                logs_dir / f"{vehicle}-{drive}-{seed}.mcap",
                vehicle=vehicle,
                drive=drive,
                start_ns=time.time_ns() - int(seconds * 1e9),
                duration_s=seconds,
                seed=seed,
            )
        return made[key]

    return make
