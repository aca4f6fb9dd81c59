"""Quality suites as data: one YAML file per lake table under assets/quality/, plus policy.yaml.

Each expectation names a great-expectations expectation type (``expect_...``) with its kwargs,
or one of our DuckDB check types (``rate_within``, ``max_gap_below``), or raw ``sql``; its
``engine`` says where it runs (``gx`` on pandas, or ``duckdb``), its ``severity`` whether a
failure quarantines the drive or only warns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataloop import rules
from dataloop.ingest.tables import SCHEMAS
from dataloop.rules import RulesError, rules_dir  # noqa: F401 (rules_dir: callers import it here)
from dataloop.rules import schemas as S

SEVERITIES = S.SEVERITIES
NOT_SUITES = ("policy.yaml", "fleet.yaml", "geofence.yaml", "retention.yaml")
"""Rule files beside the suites: the policy and the fleet profile are hashed with them;
geofence and retention belong to compliance (their own asset, their own code version)."""
# Checks GX can run over the hour's concatenated rows; order-dependent ones (increasing
# timestamps) must see one drive at a time, which DuckDB does with a window per drive.
ROW_WISE_GX = set(S.ROW_WISE_GX)
ENGINES = S.ENGINES

SuiteError = RulesError
"""A suite that does not validate (the rules' own error: file, line, what is allowed)."""


@dataclass(frozen=True)
class Expectation:
    id: str
    table: str
    family: str
    engine: str
    severity: str
    type: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    sql: str | None = None
    description: str = ""
    mostly: float = 1.0
    suite: str = ""

    @property
    def key(self) -> str:
        return f"{self.suite}.{self.id}"


@dataclass(frozen=True)
class Suites:
    expectations: tuple[Expectation, ...]
    policy: dict[str, Any]
    fleet: dict[str, Any]
    """The fleet profile (fleet.yaml): ``required_tables``, ``front_camera``."""
    version: str
    """Hash of every rule file: part of the verdict asset's code_version."""

    def for_engine(self, engine: str) -> list[Expectation]:
        return [e for e in self.expectations if e.engine == engine]


def suite_files(directory: Path | None = None) -> list[Path]:
    """The suites (one per table), the fleet profile and the policy, in hashing order."""
    directory = (directory or rules_dir()) / "quality"
    files = sorted(p for p in directory.glob("*.yaml") if p.name not in NOT_SUITES)
    return [*files, directory / "fleet.yaml", directory / "policy.yaml"]


def load_suites(
    directory: Path | None = None, files: Mapping[Path, bytes | None] | None = None
) -> Suites:
    """The suites of the rules folder (or of ``files``, their bytes: a snapshot); raises
    :class:`RulesError` naming file and line."""
    files = files if files is not None else {p: None for p in suite_files(directory)}
    *suites, fleet_path, policy_path = files
    digest = hashlib.sha256()
    expectations: list[Expectation] = []
    for path in suites:
        raw = rules.read_bytes(path, files[path])
        digest.update(path.name.encode() + b"\0" + raw)
        doc = rules.load(path, S.Suite, raw)
        for item in doc.get("expectations", []):
            expectations.append(Expectation(table=doc["table"], suite=path.stem, **item))
    fleet = load_fleet(fleet_path, rules.read_bytes(fleet_path, files[fleet_path]))
    # what quality checks of it (the front camera is search's and the review's)
    digest.update(b"fleet.yaml\0" + repr(fleet["required_tables"]).encode())
    policy_raw = rules.read_bytes(policy_path, files[policy_path])
    digest.update(b"policy.yaml\0" + policy_raw)
    policy = rules.load(policy_path, S.QualityPolicy, policy_raw)
    return Suites(tuple(expectations), policy, fleet, digest.hexdigest()[:16])


def load_fleet(path: Path | None = None, raw: bytes | None = None) -> dict[str, Any]:
    """The fleet profile (``quality/fleet.yaml`` of the rules folder), defaults filled in."""
    path = path or rules_dir() / "quality" / "fleet.yaml"
    doc = rules.load(path, S.FleetProfile, raw, context={"tables": tuple(SCHEMAS)})
    return S.FleetProfile.model_validate(doc, context={}).model_dump()


def suites_snapshot(directory: Path | None = None) -> rules.Snapshot[Suites]:
    """The suites' files read now, validated on first use (the quality asset's rules)."""
    return rules.Snapshot(suite_files(directory), lambda files: load_suites(files=files))


def rules_hash(*paths: Path) -> str:
    """Hash of rule files (missing files hash as absent)."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"-"))
    return digest.hexdigest()[:16]


def pick_front(cameras: Iterable[str], front: str) -> str | None:
    """The camera that stands for a drive: the profile's ``front`` one, or, in a drive
    without it, the first by name (``None``: the drive has no camera)."""
    cameras = sorted(set(cameras))
    return front if front in cameras else next(iter(cameras), None)
