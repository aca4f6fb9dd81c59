"""Quality suites as data: one YAML file per lake table under assets/quality/, plus policy.yaml.

Each expectation names a great-expectations expectation type (``expect_...``) with its kwargs,
or one of our DuckDB check types (``rate_within``, ``max_gap_below``), or raw ``sql``; its
``engine`` says where it runs (``gx`` on pandas, or ``duckdb``), its ``severity`` whether a
failure quarantines the drive or only warns.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("quarantine", "warn")
NOT_SUITES = ("policy.yaml", "geofence.yaml", "retention.yaml")
"""Rule files beside the suites: the policy is hashed with them; geofence and retention
belong to compliance (their own asset, their own code version)."""
# Checks GX can run over the hour's concatenated rows; order-dependent ones (increasing
# timestamps) must see one drive at a time, which DuckDB does with a window per drive.
ROW_WISE_GX = {
    "expect_column_values_to_be_between",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set",
    "expect_compound_columns_to_be_unique",
}
ENGINES = ("gx", "duckdb")


class SuiteError(ValueError):
    pass


def rules_dir() -> Path:
    """``$DATALOOP_RULES`` or the repository's assets/ folder."""
    return Path(os.environ.get("DATALOOP_RULES") or Path(__file__).resolve().parents[2] / "assets")


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
    version: str
    """Hash of every rule file: part of the verdict asset's code_version."""

    def for_engine(self, engine: str) -> list[Expectation]:
        return [e for e in self.expectations if e.engine == engine]


def load_suites(directory: Path | None = None) -> Suites:
    directory = (directory or rules_dir()) / "quality"
    files = sorted(p for p in directory.glob("*.yaml") if p.name not in NOT_SUITES)
    digest = hashlib.sha256()
    expectations: list[Expectation] = []
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        doc = yaml.safe_load(raw)
        for item in doc.get("expectations", []):
            e = Expectation(table=doc["table"], suite=path.stem, **item)
            if e.engine not in ENGINES or e.severity not in SEVERITIES:
                raise SuiteError(
                    f"{path.name}:{e.id}: engine {e.engine!r}, severity {e.severity!r}"
                )
            if not (e.type or e.sql):
                raise SuiteError(f"{path.name}:{e.id}: needs a type or sql")
            if e.engine == "gx" and e.type not in ROW_WISE_GX:
                raise SuiteError(f"{path.name}:{e.id}: {e.type} runs in duckdb, not gx")
            expectations.append(e)
    policy_path = directory / "policy.yaml"
    policy_raw = policy_path.read_bytes()
    digest.update(b"policy.yaml\0" + policy_raw)
    return Suites(tuple(expectations), yaml.safe_load(policy_raw), digest.hexdigest()[:16])


def rules_hash(*paths: Path) -> str:
    """Hash of rule files (missing files hash as absent)."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"-"))
    return digest.hexdigest()[:16]
