"""The code location loads, and the asset graph is what we expect (a snapshot: an accidental
change to the graph shows up in review)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dataloop.definitions import defs as load_defs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

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
        "curation_sensor",
        "training_trigger",
        "release_rollout",
    }
    assert "lake" in repo.get_top_level_resources()
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"hour_fit_for_use", "gate_passed"}
    assert {s.name for s in repo.schedule_defs} == {"daily_retention", "training_schedule"}


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
