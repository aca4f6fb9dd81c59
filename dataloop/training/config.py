"""The training rules of ``assets/training/``: model config and trigger policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataloop import rules
from dataloop.lake.hashing import sha256_bytes, sha256_json
from dataloop.rules import rules_dir
from dataloop.rules import schemas as S

TRIGGER_TAG = "dataloop/trigger"
"""Run tag that says why a training run started."""


def model_file() -> Path:
    return rules_dir() / "training" / "model.yaml"


def trigger_file() -> Path:
    return rules_dir() / "training" / "trigger.yaml"


def model_config(path: Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """``training/model.yaml`` (or ``data``, its bytes), validated (``RulesError``)."""
    return rules.load(path or model_file(), S.Model, data)


def trigger_policy(path: Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """``training/trigger.yaml`` (or ``data``, its bytes), validated (``RulesError``)."""
    return rules.load(path or trigger_file(), S.Trigger, data)


def code_version() -> str:
    """Hash of the training code and of what it shares with the car (``dataloop/policy``:
    observation, features, forward pass, bundle format): a model card names it."""
    here = Path(__file__).parent
    sources = sorted(here.glob("*.py")) + sorted((here.parent / "policy").glob("*.py"))
    return sha256_bytes(b"".join(p.read_bytes() for p in sources))[:16]


def rules_version(
    model: dict[str, Any] | None = None, trigger: dict[str, Any] | None = None
) -> str:
    return sha256_json([model or model_config(), trigger or trigger_policy()])[:16]
