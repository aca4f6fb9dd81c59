"""`dataloop demo` beside `dagster dev` on one DAGSTER_HOME: the demo uses the daemon that
already serves the instance. (A module of its own, so that pytest-xdist runs it beside the
whole-loop demo of tests/test_demo.py rather than after it.)"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tests.helpers import daemon_beside, free_port, lenient_rules, run_dataloop

REPO = Path(__file__).resolve().parents[1]


def test_demo_shares_its_dagster_home_with_dagster_dev(tmp_path, monkeypatch):
    """`dagster dev` already serves the demo's DAGSTER_HOME (started, as docs/ui.md says, with
    the demo's rules, TUF keys and sensor interval): the demo uses its daemon instead of
    starting a second one, nothing fails, and no run is duplicated (one run per run key, and
    every run in the instance is one the demo waited for)."""
    import dagster as dg

    from dataloop.demo.profile import demo_rules
    from dataloop.release.repository import KEYS_ENV, init_keys

    state = tmp_path / "state"
    monkeypatch.setenv("DATALOOP_RULES", str(lenient_rules(tmp_path)))
    rules = demo_rules(state)  # what the demo builds (it builds it again, the same)
    init_keys(state / "keys")
    env = {
        **os.environ,
        "DATALOOP_LAKE": str(state / "lake"),
        "DAGSTER_HOME": str(state / "dagster"),
        "DATALOOP_RULES": str(rules),
        KEYS_ENV: str(state / "keys"),
        "DATALOOP_SENSOR_INTERVAL_S": "5",
        "PYTHONPATH": str(REPO),
    }
    (state / "dagster").mkdir(parents=True)
    shutil.copy(REPO / "workspace.yaml", tmp_path / "workspace.yaml")
    dev = [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml"]
    with daemon_beside(dev + ["-p", str(free_port())], env, tmp_path):
        args = ["--iterations", "1", "--vehicles", "2", "--minutes", "0.4", "--seed", "5"]
        proc = run_dataloop(env, tmp_path, "demo", *args, "--json")
        assert "a daemon already serves this instance" in " ".join(proc.stderr.split())
        [it] = json.loads(proc.stdout)
        assert it["runs"] and all(r["status"] == "SUCCESS" for r in it["runs"]), it["runs"]
        assert it["model"] is not None and it["releases"], it
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            runs = instance.get_runs()
        keys = [r.tags["dagster/run_key"] for r in runs if "dagster/run_key" in r.tags]
        assert len(keys) == len(set(keys)) and keys
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert {r.run_id for r in runs} == {r["run_id"] for r in it["runs"]}
