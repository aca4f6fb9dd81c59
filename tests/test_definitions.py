"""The code location loads, and the asset graph is what we expect (a snapshot: an accidental
change to the graph shows up in review)."""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from dataloop.definitions import defs as load_defs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAPSHOT = REPO / "tests" / "snapshots" / "asset_specs.json"
UPDATE_ENV = "DATALOOP_UPDATE_SNAPSHOTS"

EXPECTED_ASSETS = {
    "raw_drive_logs": {"group": "ingest", "partitioned": False, "deps": []},
    "decoded_drives": {"group": "ingest", "partitioned": True, "deps": ["raw_drive_logs"]},
    "drive_verdicts": {"group": "quality", "partitioned": True, "deps": ["decoded_drives"]},
    "approved_drives": {"group": "quality", "partitioned": True, "deps": ["drive_verdicts"]},
    "compliant_drives": {"group": "quality", "partitioned": True, "deps": ["approved_drives"]},
    "retention_sweep": {"group": "quality", "partitioned": False, "deps": []},
    "offboard_labels": {"group": "labeling", "partitioned": True, "deps": ["compliant_drives"]},
    "scenario_index": {
        "group": "curation",
        "partitioned": True,
        "deps": ["compliant_drives", "offboard_labels"],
    },
    "clip_embeddings": {"group": "curation", "partitioned": True, "deps": ["scenario_index"]},
    "training_dataset": {"group": "curation", "partitioned": False, "deps": ["scenario_index"]},
    "trained_model": {"group": "training", "partitioned": False, "deps": ["training_dataset"]},
    "simulation_report": {"group": "simulation", "partitioned": False, "deps": ["trained_model"]},
    "release": {"group": "release", "partitioned": False, "deps": ["simulation_report"]},
    "loop_report": {"group": "release", "partitioned": False, "deps": []},
}


def test_definitions_load_and_every_job_resolves():
    defs = load_defs()
    repo = defs.get_repository_def()
    for job in repo.get_all_jobs():
        assert job.name
    assert defs.resolve_job_def("ingest_job").partitions_def is not None
    assert {s.name for s in repo.sensor_defs} == {
        "raw_upload_sensor",
        "curation_automation",
        "training_automation",
        "release_rollout",
    }
    assert "lake" in repo.get_top_level_resources()
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"hour_fit_for_use", "gate_passed"}
    assert {s.name for s in repo.schedule_defs} == {"daily_retention", "training_schedule"}


def test_automation_sensors_cover_every_condition_once():
    """One user-code automation sensor per stage evaluates every condition: Dagster adds no
    default automation sensor (which would evaluate them a second time)."""
    defs = load_defs()
    repo = defs.get_repository_def()
    graph = defs.resolve_asset_graph()
    conditioned = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    sensors = [s for s in repo.sensor_defs if isinstance(s, dg.AutomationConditionSensorDefinition)]
    assert {s.name for s in sensors} == {"curation_automation", "training_automation"}
    covered = [k for s in sensors for k in s.asset_selection.resolve(graph)]
    assert sorted(covered) == sorted(conditioned)  # each once
    stages = {"curation_automation": "curation", "training_automation": "training"}
    for sensor in sensors:
        assert sensor.sensor_type.name == "AUTOMATION"  # use_user_code_server: not the asset daemon
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.run_tags == {"dataloop/stage": stages[sensor.name]}
        assert not sensor.emit_backfills  # one run per day, not a backfill
    # automation runs (the implicit asset job) follow DATALOOP_EXECUTOR as the stage jobs do
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_release_freshness_is_the_timestamp_expiry():
    from datetime import timedelta

    from dataloop.release.repository import EXPIRY

    policy = load_defs().resolve_asset_graph().get(dg.AssetKey("release")).freshness_policy
    assert policy.fail_window.to_timedelta() == EXPIRY["timestamp"]
    assert policy.warn_window.to_timedelta() == EXPIRY["timestamp"] - timedelta(hours=5)


def test_asset_graph_snapshot():
    graph = load_defs().resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        actual[key.to_user_string()] = {
            "group": node.group_name,
            "partitioned": node.partitions_def is not None,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
        }
    assert actual == EXPECTED_ASSETS


# -- the pinned asset specs (tests/snapshots/asset_specs.json) ------------------------------
_HASH = re.compile(r"\b[0-9a-f]{8,}\b")


def _condition(c: Any) -> str | None:
    """An automation condition as Dagster labels it: ``eager``, ``on_cron(0 * * * *, UTC)``,
    or the operator over its operands where it carries no label."""
    if c is None:
        return None
    if c.get_label():
        return c.get_label()
    inner = [_condition(child) for child in c.children]
    return f"{c.name}({', '.join(inner)})" if inner else c.name


def _partitions(p: Any) -> dict[str, Any] | None:
    if p is None:
        return None
    out: dict[str, Any] = {"type": type(p).__name__}
    if isinstance(p, dg.TimeWindowPartitionsDefinition):
        out |= {
            "cron": p.cron_schedule,
            "start": p.start.isoformat(),
            "timezone": p.timezone,
            "fmt": p.fmt,
            "end_offset": p.end_offset,
        }
    elif isinstance(p, dg.StaticPartitionsDefinition):
        out["keys"] = p.get_partition_keys()
    elif isinstance(p, dg.DynamicPartitionsDefinition):
        out["name"] = p.name
    elif isinstance(p, dg.MultiPartitionsDefinition):
        out["dimensions"] = {d.name: _partitions(d.partitions_def) for d in p.partitions_defs}
    else:
        out["description"] = str(p)
    return out


def asset_specs(defs: dg.Definitions) -> dict[str, Any]:
    """Every asset of the code location as the graph sees it: what a review should notice
    when it changes. Code versions keep their shape with the rule and code hashes masked
    (``quality-1.suites-<hash>``): editing a rule file is no change to the graph; descriptions
    and metadata are prose, not structure, and are left out."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, dict[str, Any]] = {}
    for key in graph.asset_check_keys:
        check = graph.get(key)
        checks.setdefault(key.asset_key.to_user_string(), {})[key.name] = {
            "blocking": check.blocking,
            "partitions": _partitions(check.partitions_def),
            "automation_condition": _condition(check.automation_condition),
        }
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        mappings = {k.to_user_string(): repr(m) for k, m in sorted(node.partition_mappings.items())}
        tags = {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")}
        version = node.code_version
        out[name] = {
            "group": node.group_name,
            "execution": node.execution_type.value,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partition_mappings": mappings,
            "partitions": _partitions(node.partitions_def),
            "checks": checks.get(name, {}),
            "automation_condition": _condition(node.automation_condition),
            "freshness_policy": repr(node.freshness_policy) if node.freshness_policy else None,
            "backfill_policy": repr(node.backfill_policy) if node.backfill_policy else None,
            "code_version": _HASH.sub("<hash>", version) if version else None,
            "kinds": sorted(node.kinds),
            "tags": tags,
            "owners": sorted(node.owners),
            "pools": sorted(node.pools or ()),
        }
    return out


def test_asset_specs_match_the_snapshot():
    """An accidental change to an asset's spec shows up here (and in review, as a diff of
    tests/snapshots/asset_specs.json). A deliberate one: regenerate the snapshot with
    ``DATALOOP_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_definitions.py`` and commit it."""
    actual = json.dumps(asset_specs(load_defs()), indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(actual)
        return
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=str(SNAPSHOT.relative_to(REPO)),
                tofile="the definitions as they load now",
            )
        )
        raise AssertionError(
            "the asset specs changed. If that is intended, regenerate the snapshot "
            f"({UPDATE_ENV}=1 .venv/bin/pytest tests/test_definitions.py) and commit it:\n" + diff
        )


def test_ingest_partitions_are_arrival_hours_including_the_current_one():
    job = load_defs().resolve_job_def("ingest_job")
    pdef = job.partitions_def
    assert isinstance(pdef, dg.HourlyPartitionsDefinition)
    from datetime import UTC, datetime

    current = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    assert pdef.get_last_partition_key() == current


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": ""},
    )


def test_dagster_dev_workspace_loads():
    proc = _cli("dagster", "definitions", "validate", "-w", "workspace.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_dg_project_loads():
    proc = _cli("dg", "check", "defs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr
