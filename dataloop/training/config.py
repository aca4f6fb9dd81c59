"""The training rules of ``assets/training/``: model config and trigger policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dataloop.lake.hashing import sha256_bytes, sha256_json
from dataloop.quality.suites import rules_dir

TRIGGER_TAG = "dataloop/trigger"
"""Run tag that says why a training run started."""


def model_config(path: Path | None = None) -> dict[str, Any]:
    return yaml.safe_load((path or rules_dir() / "training" / "model.yaml").read_text())


def trigger_policy(path: Path | None = None) -> dict[str, Any]:
    return yaml.safe_load((path or rules_dir() / "training" / "trigger.yaml").read_text())


def code_version() -> str:
    """Hash of the training code and of the feature construction it shares with the
    simulator: a model card names it."""
    here = Path(__file__).parent
    sources = sorted(here.glob("*.py")) + [
        here.parent / "fleet" / "simulator" / "features.py",
        here.parent / "fleet" / "simulator" / "policy.py",
    ]
    return sha256_bytes(b"".join(p.read_bytes() for p in sources))[:16]


def rules_version() -> str:
    return sha256_json([model_config(), trigger_policy()])[:16]
