"""Storage faults: the whole loop over real S3 HTTP (moto) behind a fault-injecting proxy.

With 10-20 % of requests failing, every committed drive is processed exactly once and the
lake holds the same content-addressed bytes as a run without faults; interrupted multipart
uploads resume; no partial object is ever visible."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from dataloop.fleet.uploader import upload_drive
from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Store
from dataloop.lake.store import ObjectStore
from tests.faults.loop import LoopRun, audit, process_lake, upload_logs
from tests.faults.proxy import FaultMix, FaultProxy

MIX = FaultMix(
    error_500=0.05,
    slowdown_503=0.01,
    reset_before=0.03,
    reset_after=0.03,
    stall_body=0.005,
    truncate=0.03,
    slow=0.03,
    slow_s=0.05,
    stall_s=2.5,
)
"""15.5 % of requests fail (and 3 % are slow). Few 503s and stalls: they cost seconds each
(a 503 backs off from 1 s, a stall waits out the read timeout); benchmarks/chaos.py runs
heavier mixes."""


@pytest.fixture
def faulty_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """(proxy, lake URL, direct client): the lake is reached only through the proxy."""
    bucket = f"chaos-{uuid.uuid4().hex[:12]}"
    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    direct.create_bucket(Bucket=bucket)
    with FaultProxy(s3_endpoint, MIX, seed=12) as proxy:
        monkeypatch.setenv("DATALOOP_S3_ENDPOINT", proxy.url)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("DATALOOP_S3_READ_TIMEOUT", "1")
        yield proxy, f"s3://{bucket}/lake", direct, bucket


def _tree(store: ObjectStore, prefix: str) -> dict[str, str]:
    return {o.key: hashlib.sha256(store.get(o.key)).hexdigest() for o in store.list(prefix)}


class _Watcher(threading.Thread):
    """Lists raw/ directly on the server while uploads run: every log visible must be whole
    and every manifest must point at a whole log."""

    def __init__(self, client, bucket: str, sizes: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.client, self.bucket, self.sizes = client, bucket, sizes
        self.stop = threading.Event()
        self.seen: set[str] = set()
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix="lake/raw/")
            objects = {o["Key"]: o["Size"] for o in listing.get("Contents", [])}
            for key, size in objects.items():
                self.seen.add(key)
                drive = key.rsplit("/", 1)[-1].removesuffix(".manifest.json")
                drive = drive.removesuffix(".mcap")
                if key.endswith(".mcap") and size != self.sizes[drive]:
                    self.problems.append(f"{key} visible with {size} bytes")
                if key.endswith(".manifest.json") and key.replace(
                    ".manifest.json", ".mcap"
                ) not in objects | {k: 0 for k in self.seen}:
                    self.problems.append(f"{key} committed before its log")
            time.sleep(0.02)


def test_loop_under_storage_faults_loses_and_duplicates_nothing(faulty_s3, make_log, tmp_path):
    proxy, url, direct, bucket = faulty_s3
    logs = [
        (f"veh-{v}", f"d-{v}{k}", make_log(vehicle=f"veh-{v}", drive=f"d-{v}{k}", seed=v + k))
        for v, k in ((1, 1), (2, 1))
    ]
    # The reference: the same logs through the same loop on a local lake, without faults.
    reference = LocalStore(tmp_path / "reference")
    upload_logs(reference, logs, LoopRun())
    process_lake(str(reference.root), LoopRun())

    store = S3Store.from_url(url)
    run = LoopRun()
    watcher = _Watcher(direct, bucket, {d: p.stat().st_size for _, d, p in logs})
    watcher.start()
    upload_logs(store, logs, run)
    watcher.stop.set()
    watcher.join()
    process_lake(url, run)

    result = audit(store, logs)
    assert result.figures() == {
        "drives": 2,
        "uploaded": 2,
        "processed": 2,
        "lost": 0,
        "duplicated": 0,
        "partial": 0,
    }, (result, run)
    assert not watcher.problems
    # Content-addressed objects are byte for byte those of the run without faults.
    for prefix in ("tables/", "curation/scenarios/", "datasets/training/manifests/"):
        assert _tree(store, prefix) == _tree(reference, prefix), prefix
    # The faults really happened, and were mostly absorbed by retries inside the store.
    summary = proxy.summary()
    failed = sum(summary.get(f, 0) for f in ("error_500", "slowdown_503", "reset_before"))
    assert summary["requests"] > 150 and failed / summary["requests"] > 0.04, summary
    assert run.upload_retries + run.run_retries <= 3, run.errors


def test_interrupted_multipart_upload_resumes_under_faults(faulty_s3, tmp_path):
    proxy, url, direct, bucket = faulty_s3
    store = S3Store.from_url(url)
    path = tmp_path / "big.mcap"
    path.write_bytes(os.urandom(11 * 1024 * 1024 + 12345))
    part = 5 * 1024 * 1024

    class Crash(Exception):
        pass

    def crash_after_two_parts(done: int, total: int) -> None:
        if done >= 2 * part:
            raise Crash

    with pytest.raises(Crash):
        upload_drive(
            store,
            path,
            vehicle="veh-1",
            drive="big",
            part_size=part,
            progress=crash_after_two_parts,
        )
    # Nothing is visible: no log object, no manifest, only the unfinished upload.
    listing = direct.list_objects_v2(Bucket=bucket, Prefix="lake/raw/")
    assert listing.get("KeyCount", 0) == 0
    assert direct.list_multipart_uploads(Bucket=bucket).get("Uploads")

    result = upload_drive(store, path, vehicle="veh-1", drive="big", part_size=part)
    assert result.status == "resumed"
    assert result.parts_reused >= 1 and result.parts_reused + result.parts_sent == 3
    body = direct.get_object(Bucket=bucket, Key=f"lake/{result.log_key}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result.sha256
    # Reading the log back through the faults gives every byte (broken bodies are resumed).
    with store.open(result.log_key) as f:
        assert hashlib.sha256(f.read()).hexdigest() == result.sha256
    assert upload_drive(store, path, vehicle="veh-1", drive="big").status == "already_uploaded"
    assert not direct.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_broken_bodies_are_detected_and_read_again(faulty_s3):
    proxy, url, direct, bucket = faulty_s3
    proxy.mix = FaultMix(truncate=0.3, stall_body=0.1, stall_s=2.0)
    store = S3Store.from_url(url)
    data = os.urandom(3 * 1024 * 1024)
    proxy.enabled = False
    store.put("blob", data)
    proxy.enabled = True
    for _ in range(5):
        assert store.get("blob") == data
        with store.open("blob") as f:
            assert f.read() == data
        assert store.get_range("blob", 1000, 5000) == data[1000:6000]
    assert proxy.injected["truncate"] + proxy.injected["stall_body"] >= 3
