"""Rules as validated data: every loader names file, line and what is allowed; a broken file
fails only its own assets while the code location loads; the rules ship in the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dataloop import rules
from dataloop.curation import datasets as D
from dataloop.labeling.offboard import load_params
from dataloop.quality.geofence import load_zones
from dataloop.quality.retention import load_retention
from dataloop.quality.suites import load_suites
from dataloop.release import rollout as RO
from dataloop.rules import RulesError
from dataloop.rules import schemas as S
from dataloop.simulation.gate import load_gate
from dataloop.training.config import model_config, trigger_policy

REPO = Path(__file__).resolve().parents[1]

LOADERS = {
    "quality/frames.yaml": lambda d: load_suites(d),
    "quality/policy.yaml": lambda d: load_suites(d),
    "quality/geofence.yaml": lambda d: load_zones(d / "quality" / "geofence.yaml"),
    "quality/retention.yaml": lambda d: load_retention(d / "quality" / "retention.yaml"),
    "curation/training.yaml": lambda d: D.load_policy(d / "curation" / "training.yaml"),
    "training/model.yaml": lambda d: model_config(d / "training" / "model.yaml"),
    "training/trigger.yaml": lambda d: trigger_policy(d / "training" / "trigger.yaml"),
    "gates/release.yaml": lambda d: load_gate(d / "gates" / "release.yaml"),
    "release/rollout.yaml": lambda d: RO.load_policy(d / "release" / "rollout.yaml"),
    "labeling/offboard.yaml": lambda d: load_params(d / "labeling" / "offboard.yaml"),
}

# (file, text as shipped, broken text, what the message must say besides file and line)
MISSPELLED = [
    ("quality/frames.yaml", "family: monotonic", "familly: monotonic",
     ["unknown key 'familly'", "did you mean 'family'", "allowed: id, family, engine, severity"]),
    ("quality/frames.yaml", "kwargs: {hz: 10,", "kwargs: {hertz: 10,",
     ["unknown kwarg 'hertz'; allowed: hz, tolerance"]),
    ("quality/policy.yaml", "max_quarantine_rate:", "max_quarantine_rat:",
     ["unknown key 'max_quarantine_rat'", "allowed: max_quarantine_rate, min_usable_drives"]),
    ("quality/geofence.yaml", "action: coarsen", "acton: coarsen",
     ["unknown key 'acton'", "allowed: name, action, polygon, precision_m"]),
    ("quality/retention.yaml", "days: 365", "dayz: 365",
     ["unknown key 'dayz'", "allowed: prefixes, days"]),
    ("curation/training.yaml", "near_duplicate_gap_s:", "near_duplicate_gap:",
     ["unknown key 'near_duplicate_gap'", "allowed: name, mix, max_clips_per_category"]),
    ("training/model.yaml", "epochs: 60", "epoch: 60",
     ["unknown key 'epoch'", "did you mean 'epochs'", "allowed: name, architecture, inputs"]),
    ("training/trigger.yaml", "min_new_clips: 50", "min_new_clipz: 50",
     ["unknown key 'min_new_clipz'", "allowed: min_new_clips, category_growth_pct"]),
    ("gates/release.yaml", "min_effect:", "min_efect:",
     ["unknown key 'min_efect'", "allowed: alpha, min_effect"]),
    ("release/rollout.yaml", "min_km_per_stage:", "min_km_per_stag:",
     ["unknown key 'min_km_per_stag'", "allowed: stages, min_km_per_stage"]),
    ("labeling/offboard.yaml", "gate_m: 3.0", "gate_meters: 3.0",
     ["unknown key 'gate_meters'", "allowed: max_gap_s, gate_m"]),
]  # fmt: skip
BAD_VALUE = [
    ("quality/frames.yaml", "engine: duckdb", "engine: spark",
     ["engine: 'spark' is not allowed; allowed: gx, duckdb"]),
    ("quality/frames.yaml", "severity: quarantine", "severity: fatal",
     ["'fatal' is not allowed; allowed: quarantine, warn"]),
    ("quality/policy.yaml", "min_usable_drives: 1", "min_usable_drives: one",
     ["min_usable_drives: Input should be a valid integer", "'one'"]),
    ("quality/geofence.yaml", "action: coarsen", "action: blur",
     ["action: 'blur' is not allowed; allowed: coarsen, exclude"]),
    ("quality/retention.yaml", "prefixes: [raw/]", "prefixes: [ingest/]",
     ["prefix 'ingest/' may not be swept", "never swept: ledger/, ingest/, quality/, compliance/"]),
    ("curation/training.yaml", "by: drive", "by: fleet",
     ["split.by: 'fleet' is not allowed; allowed: drive, vehicle"]),
    ("training/model.yaml", "ego: [speed, lateral_offset", "ego: [speed, lateral_ofset",
     ["'lateral_ofset' is not allowed; allowed: speed, acceleration, yaw_rate, lateral_offset"]),
    ("training/trigger.yaml", "hold_during_rollout: true", "hold_during_rollout: maybe",
     ["hold_during_rollout: Input should be a valid boolean", "'maybe'"]),
    ("gates/release.yaml", "roads: [highway, merge, roundabout, intersection]",
     "roads: [highway, motorway]",
     ["'motorway' is not allowed; allowed: highway, merge, roundabout, intersection"]),
    ("release/rollout.yaml", "stages: [1, 10, 50, 100]", "stages: [1, 10, 150]",
     ["stages [1, 10, 150]: increasing percentages in 1..100"]),
    ("labeling/offboard.yaml", "min_frames: 8", "min_frames: eight",
     ["ghosts.min_frames: Input should be a valid integer", "'eight'"]),
]  # fmt: skip


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rules"
    shutil.copytree(REPO / "assets", copy)
    return copy


def _break(folder: Path, name: str, text: str, broken: str) -> int:
    """Replace the first ``text`` of ``name`` by ``broken``; returns its (1-based) line."""
    path = folder / name
    source = path.read_text()
    assert text in source, f"{name} no longer holds {text!r}: update the test"
    path.write_text(source.replace(text, broken, 1))
    return source[: source.index(text)].count("\n") + 1


def _error(folder: Path, name: str) -> str:
    with pytest.raises(RulesError) as err:
        LOADERS[name](folder)
    return str(err.value)


@pytest.mark.parametrize(
    "name,text,broken,says", MISSPELLED + BAD_VALUE, ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_bad_rule_names_file_line_and_what_is_allowed(rules_copy, name, text, broken, says):
    line = _break(rules_copy, name, text, broken)
    message = _error(rules_copy, name)
    assert f"{name}, line {line}: " in message
    mine = [m for m in message.splitlines() if f"line {line}:" in m]
    for part in says:
        assert any(part in m for m in mine), (part, message)
    assert "Traceback" not in message and "pydantic" not in message


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_yaml_syntax_error_names_file_and_line(rules_copy, name):
    path = rules_copy / name
    lines = path.read_text().splitlines()
    at = len(lines) // 2
    lines.insert(at, "oops: a: b")
    path.write_text("\n".join(lines) + "\n")
    message = _error(rules_copy, name)
    assert message.startswith(str(path)) or message.startswith(name)
    assert f"{name}, line {at + 1}: invalid YAML: mapping values are not allowed" in message
    assert len(message.splitlines()) == 1


def test_a_misspelled_suite_key_is_an_error_not_a_type_error(rules_copy):
    # it used to reach Expectation(**item): TypeError: unexpected keyword argument
    _break(rules_copy, "quality/imu.yaml", "kwargs: {column: accel_x}", "kwarg: {column: accel_x}")
    message = _error(rules_copy, "quality/frames.yaml")
    assert "imu.yaml, line" in message and "unknown key 'kwarg'" in message


def test_a_file_that_is_no_mapping_says_what_it_should_hold(rules_copy):
    (rules_copy / "training" / "trigger.yaml").write_text("- just\n- a list\n")
    message = _error(rules_copy, "training/trigger.yaml")
    assert "trigger.yaml, line 1: expected a mapping with keys min_new_clips" in message


def test_every_shipped_rule_file_validates():
    for name, load in LOADERS.items():
        assert load(REPO / "assets") is not None, name
    overlay = REPO / "assets" / "demo"
    load_gate(overlay / "gates" / "release.yaml")
    RO.load_policy(overlay / "release" / "rollout.yaml")
    shipped = {p.relative_to(overlay).as_posix() for p in overlay.rglob("*.yaml")}
    assert shipped == {"gates/release.yaml", "release/rollout.yaml"}, "validate the new overlay"


def test_valid_rules_load_exactly_as_parsed():
    import yaml

    for path in (REPO / "assets").rglob("*.yaml"):  # libyaml's parser, PyYAML's documents
        assert rules.parse(path)[0] == yaml.safe_load(path.read_text()), path
    for name in ("training/model.yaml", "gates/release.yaml", "curation/training.yaml"):
        raw = yaml.safe_load((REPO / "assets" / name).read_text())
        loaded = LOADERS[name](REPO / "assets")
        assert (loaded.raw if isinstance(loaded, D.Policy) else loaded) == raw


def test_the_schemas_enumerations_agree_with_the_code():
    from dataloop.fleet.simulator.traffic import ROADS
    from dataloop.policy import observation as P
    from dataloop.policy.network import OUTPUTS

    assert S.EGO_FEATURES == P.EGO_FEATURES
    assert (S.HISTORY, S.MAX_OBJECTS) == (P.HISTORY, P.MAX_OBJECTS)
    assert S.ROADS == ROADS and S.OUTPUTS == OUTPUTS


def test_rules_dir_is_the_override_else_the_packaged_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("DATALOOP_RULES", str(tmp_path))
    assert rules.rules_dir() == tmp_path
    monkeypatch.delenv("DATALOOP_RULES")
    assert (rules.rules_dir() / "training" / "trigger.yaml").is_file()


def test_a_snapshot_keeps_the_bytes_it_read_and_marks_invalid_rules(rules_copy):
    path = rules_copy / "training" / "trigger.yaml"
    good = rules.snapshot(path, trigger_policy)
    path.write_text(path.read_text().replace("min_new_clips", "min_new_clipz"))
    assert good.get()["min_new_clips"] == 50  # read at construction, as the code location did
    bad = rules.snapshot(path, trigger_policy)
    assert bad.version(lambda _: "valid").startswith("invalid-rules:")
    assert good.version(lambda _: "valid") == "valid"
    for _ in range(2):  # every use fails, not only the first
        with pytest.raises(RulesError, match="unknown key 'min_new_clipz'"):
            bad.get()


PROBE = """
import json, sys
import dagster as dg
import dataloop.definitions as D
from dataloop.defs.resources import LakeResource

defs = D.defs()
graph = defs.resolve_asset_graph()
out = {"code_versions": {k.to_user_string(): graph.get(k).code_version
                         for k in graph.get_all_asset_keys()},
       "schedules": [s.name for s in defs.schedules or []]}
assets = {a.key.to_user_string(): a for a in defs.assets}
lake = {"lake": LakeResource(url=sys.argv[1])}
for name, partition in [("offboard_labels", sys.argv[2]), ("retention_sweep", None),
                        ("decoded_drives", sys.argv[2])]:
    result = dg.materialize([assets[name]], resources=lake, partition_key=partition,
                            raise_on_error=False)
    failures = [e.step_failure_data for e in result.get_step_failure_events()]
    out[name] = {"success": result.success,
                 "failure": [f.user_failure_data.description if f.user_failure_data
                             else f.error.message for f in failures]}
print("PROBE" + json.dumps(out))
"""


def _probe(rules: Path, tmp_path: Path) -> dict:
    """Load the definitions on ``rules`` in a fresh process; materialize a few assets."""
    env = {**os.environ, "DATALOOP_RULES": str(rules), "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "lake"), "2026-01-01-00:00"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("PROBE", 1)[1])


def test_a_broken_rule_fails_only_its_assets_and_the_code_location_loads(rules_copy, tmp_path):
    line = _break(rules_copy, "labeling/offboard.yaml", "min_frames: 8", "min_framez: 8")
    _break(rules_copy, "training/trigger.yaml", "cron: ", "cron: every monday ")
    adapter_line = _break(rules_copy, "ingest/adapters/ros2.yaml", "accel_x: linear_acceleration.x",
                          "accel_x: linear_aceleration.x")  # fmt: skip
    out = _probe(rules_copy, tmp_path)
    versions = out["code_versions"]
    assert versions["offboard_labels"].startswith("invalid-rules:")
    assert versions["trained_model"].startswith("invalid-rules:")  # trigger.yaml is its rule
    assert versions["drive_verdicts"].startswith("quality-1.suites-")
    assert "training_schedule" in out["schedules"]
    labels = out["offboard_labels"]
    assert not labels["success"]
    message = labels["failure"][0]
    assert f"offboard.yaml, line {line}: unknown key 'min_framez'" in message
    assert "allowed: min_frames" in message and "Traceback" not in message
    assert out["retention_sweep"] == {"success": True, "failure": []}
    # broken adapters: ingest fails its runs (naming file and line), quarantining nothing
    assert versions["decoded_drives"].startswith("invalid-rules:")
    ingest = out["decoded_drives"]
    assert not ingest["success"]
    assert f"ros2.yaml, line {adapter_line}" in ingest["failure"][0], ingest["failure"][0][:400]
    assert "linear_aceleration" in ingest["failure"][0]
    assert not (tmp_path / "lake" / "quarantine").exists()


def test_an_adapter_edit_marks_every_hour_stale(rules_copy, tmp_path):
    """The adapters are part of the ingest asset's code version: a valid edit (a unit on an
    IMU column) changes it, so Dagster shows every decoded hour stale to re-run."""
    from dataloop.defs.ingest.assets import decoded_drives

    shipped = decoded_drives.code_versions_by_key[decoded_drives.key]
    _break(rules_copy, "ingest/adapters/ros2.yaml", "accel_x: linear_acceleration.x",
           "accel_x: {path: linear_acceleration.x, scale: 1.0}")  # fmt: skip
    edited = _probe(rules_copy, tmp_path)["code_versions"]["decoded_drives"]
    assert edited.startswith("decoder-") and edited != shipped
    assert edited.split(".contract-")[1] == shipped.split(".contract-")[1]


@pytest.mark.timeout(300)
def test_the_wheel_ships_the_rules(tmp_path):
    """The built wheel holds every rule file as package ``dataloop_rules``, and a non-editable
    install finds them there (the wheel unpacked first on the path)."""
    source = tmp_path / "source"  # a copy: no build/ left in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("dataloop", "assets"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "whl"), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "whl").glob("dataloop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    rules_files = {
        p.relative_to(REPO / "assets").as_posix()
        for p in (REPO / "assets").rglob("*")
        if p.suffix in (".yaml", ".sql")
    }
    assert rules_files and {f"dataloop_rules/{f}" for f in rules_files} <= names
    assert "dataloop/rules/schemas.py" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = subprocess.run(
        [sys.executable, "-c", "import dataloop.rules as r; print(r.__file__, r.rules_dir())"],
        env={
            **{k: v for k, v in os.environ.items() if k != "DATALOOP_RULES"},
            "PYTHONPATH": str(site),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    module, folder = probe.stdout.split()
    assert module.startswith(str(site)) and folder == str(site / "dataloop_rules")
