"""A throwaway Spark standalone cluster for the tests: one master and two workers (one core,
1 GiB each), run from pyspark's own jars on Debian's Java 17, on loopback. Each daemon runs in
the foreground as our child, in a session of its own with a parent-death signal, and is
stopped at teardown. It starts in ~10 s, so one cluster serves a test session (per xdist
worker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import free_port, stop_group
from tests.radosgw import _die_with_parent

WORKERS = 2
START_TIMEOUT_S = 90.0


@dataclass
class SparkCluster:
    master: str
    """``spark://127.0.0.1:<port>``, what ``DATALOOP_SPARK_MASTER`` takes."""
    master_ui: str
    worker_uis: list[str]
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def _json(self, ui: str) -> dict:
        with urllib.request.urlopen(f"{ui}/json/", timeout=5) as r:  # noqa: S310 - loopback
            return json.loads(r.read())

    def alive_workers(self) -> int:
        return int(self._json(self.master_ui).get("aliveworkers", 0))

    def executors_of(self, app_id: str) -> list[int]:
        """How many executors of ``app_id`` each worker runs (or ran)."""
        counts = []
        for ui in self.worker_uis:
            status = self._json(ui)
            runs = status.get("executors", []) + status.get("finishedexecutors", [])
            counts.append(sum(e.get("appid") == app_id for e in runs))
        return counts

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"{p.name}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
            for p in sorted(self.logs.glob("*.out"))
        )


def _spark_home() -> Path | None:
    try:
        import pyspark
    except ImportError:
        return None
    return Path(pyspark.__file__).parent


def start(root: Path) -> SparkCluster:
    home = _spark_home()
    assert home is not None
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_NO_DAEMONIZE": "1",
    }
    (root / "logs").mkdir(parents=True)
    port, ui = free_port(), free_port()
    worker_uis = [free_port() for _ in range(WORKERS)]
    cluster = SparkCluster(
        f"spark://127.0.0.1:{port}",
        f"http://127.0.0.1:{ui}",
        [f"http://127.0.0.1:{p}" for p in worker_uis],
        root / "logs",
    )
    spark_class = str(home / "bin" / "spark-class")

    def spawn(name: str, *args: str) -> None:
        with (root / "logs" / f"{name}.out").open("wb") as out:
            cluster.procs.append(
                subprocess.Popen(
                    [spark_class, *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            )

    spawn("master", "org.apache.spark.deploy.master.Master",
          "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))  # fmt: skip
    for i, wui in enumerate(worker_uis):
        spawn(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
              "--cores", "1", "--memory", "1g", "--webui-port", str(wui),
              "--work-dir", str(root / f"work-{i}"), cluster.master)  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if cluster.alive_workers() == WORKERS and all(
                cluster._json(u) for u in cluster.worker_uis
            ):
                return cluster
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs):
            tail = cluster.log_tail()
            stop(cluster)
            raise RuntimeError(f"the Spark cluster did not start:\n{tail}")
        time.sleep(0.5)


def stop(cluster: SparkCluster) -> None:
    for proc in reversed(cluster.procs):
        stop_group(proc, grace=15)


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[SparkCluster]:
    """One standalone cluster for the session. Missing Java or pyspark fails in CI (.ci/run
    installs both) and skips elsewhere."""
    found = {"java": shutil.which("java"), "pyspark": _spark_home()}
    missing = [name for name, where in found.items() if not where]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"no {', '.join(missing)}: .ci/run installs Java 17 and pyspark")
        pytest.skip(f"no {', '.join(missing)} (apt-get install openjdk-17-jre-headless)")
    root = Path(tempfile.mkdtemp(prefix="dataloop-spark-"))
    t0 = time.monotonic()
    cluster = start(root)
    print(f"\nspark started in {time.monotonic() - t0:.1f} s at {cluster.master}")
    try:
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(root, ignore_errors=True)
