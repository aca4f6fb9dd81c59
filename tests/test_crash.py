"""Crash consistency: ingest and quality killed with SIGKILL at any point (while decoding,
while writing Parquet, while replacing a pointer, at a random moment), then re-run, leave the
lake exactly as an uninterrupted run does; so does a ``dataloop tick`` killed mid-run. The same
on a real S3 server (Ceph radosgw), with a vehicle's upload killed mid-multipart as well.

What may differ: the ``processed_at`` stamp of records (when they were written), an hour's
``newly_processed`` count (what that particular run did, not what the hour holds) and, for a
tick, Dagster's run ids inside dataset records. Everything else is equal, and every
content-addressed object (tables, clip indexes, dataset manifests) byte for byte."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from dataloop.fleet.uploader import upload_drive
from dataloop.lake.local import LocalStore
from dataloop.lake.s3 import S3Store
from dataloop.lake.store import ObjectStore
from tests.faults.crashy import run as run_stages

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"processed_at", "newly_processed"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def snapshot(root: Path, *, strip: set[str] = VOLATILE) -> dict[str, Any]:
    """Every visible object of a local lake: JSON parsed without volatile fields, the rest
    as bytes (internal temporary files are not part of the lake)."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(".dataloop-internal/"):
            continue
        data = path.read_bytes()
        out[rel] = _strip(json.loads(data)) if rel.endswith(".json") else data
    return out


def snapshot_store(store: ObjectStore) -> dict[str, Any]:
    """``snapshot`` of a lake on S3: every listed object."""
    out: dict[str, Any] = {}
    for o in store.list(""):
        data = store.get(o.key)
        out[o.key] = _strip(json.loads(data)) if o.key.endswith(".json") else data
    return out


def _crashy(lake: Path | str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.faults.crashy", str(lake), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_nothing_partial(root: Path) -> None:
    for path in root.glob("tables/**/*.parquet"):
        pq.read_table(io.BytesIO(path.read_bytes()))  # raises on half a file
    for path in root.rglob("*.json"):
        if ".dataloop-internal" not in path.parts:
            json.loads(path.read_bytes())


def test_ingest_and_quality_killed_anywhere_end_as_uninterrupted(tmp_path, make_log):
    base = LocalStore(tmp_path / "base")
    for k in range(3):
        upload_drive(base, make_log(vehicle="veh-3", drive=f"c-{k}", seed=k), vehicle="veh-3")
    (tmp_path / "garbage.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(5000))
    upload_drive(base, tmp_path / "garbage.mcap", vehicle="veh-3", drive="bad")
    reference = tmp_path / "reference"
    shutil.copytree(base.root, reference)
    run_stages(str(reference), ["ingest", "quality"])

    lake = tmp_path / "crashed"
    shutil.copytree(base.root, lake)
    stages = "ingest,quality"
    for point, n in [("decode", 2), ("parquet", 4), ("pointer", 2), ("verdict", 2)]:
        proc = _crashy(lake, stages, point, str(n))
        assert proc.returncode == -signal.SIGKILL, (point, n, proc.stderr[-2000:])
        _assert_nothing_partial(lake)
    # And at a random moment, from outside.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.crashy", str(lake), stages], cwd=REPO
    )
    time.sleep(random.Random(12).uniform(0.5, 2.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_nothing_partial(lake)
    final = _crashy(lake, stages)
    assert final.returncode == 0 and "done" in final.stdout, final.stderr[-2000:]

    got, want = snapshot(lake), snapshot(reference)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


def test_on_radosgw_killed_uploads_and_stages_end_as_uninterrupted(
    radosgw, radosgw_lake, tmp_path, make_log, monkeypatch
):
    """On a real S3 server a killed write never half-lands: an upload killed after its first
    part leaves no object and no manifest, and resumes; ingest and quality killed before a
    pointer swap and at a random moment (maybe mid-request), then re-run, end with the objects
    of an uninterrupted run over the same uploads (taken first, then its outputs deleted)."""
    lake = S3Store.from_url(radosgw_lake)
    big = tmp_path / "long-drive.mcap"
    big.write_bytes(os.urandom(11 << 20))  # not a log: quarantined, but uploaded in 3 parts
    monkeypatch.setenv("CRASHY_UPLOAD_FILE", str(big))
    monkeypatch.setenv("CRASHY_UPLOAD_VEHICLE", "veh-9")
    killed = _crashy(radosgw_lake, "upload", "part", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list(lake.list("")) == []  # one part on the server, invisible
    assert upload_drive(lake, big, vehicle="veh-9", part_size=5 << 20).status == "resumed"
    for k in range(2):
        upload_drive(lake, make_log(vehicle="veh-9", drive=f"k-{k}", seed=k), vehicle="veh-9")

    stages = ["ingest", "quality"]
    run_stages(radosgw_lake, stages)
    want = snapshot_store(lake)
    for key in want:
        if not key.startswith("raw/"):
            lake.delete(key)
    assert all(o.key.startswith("raw/") for o in lake.list(""))

    proc = _crashy(radosgw_lake, ",".join(stages), "pointer", "2")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.crashy", radosgw_lake, ",".join(stages)], cwd=REPO
    )
    time.sleep(random.Random(21).uniform(3.0, 5.0))  # past the imports: while it writes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_stages(radosgw_lake, stages)

    got = snapshot_store(lake)
    assert sorted(got) == sorted(want)
    assert any(k.startswith("tables/") for k in want) and any("quality/" in k for k in want)
    for key in want:
        assert got[key] == want[key], key
