"""The demo's rules and fleet: ``assets/`` with ``assets/demo/`` laid over it, and a small
simulated fleet that drives the roads the demo gate tests."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from dataloop.fleet.simulator.config import SimConfig
from dataloop.quality.suites import rules_dir

OVERLAY = "demo"
"""The folder under the rules folder whose files replace their namesakes for the demo."""


def demo_rules(home: Path) -> Path:
    """Build ``home/rules`` (the rules folder with the demo overlay) and point
    ``$DATALOOP_RULES`` at it for this process and its children; returns the folder."""
    source = rules_dir()
    target = home / "rules"
    staging = home / "rules.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(OVERLAY))
    overlay = source / OVERLAY
    for path in overlay.rglob("*.yaml"):
        dest = staging / path.relative_to(overlay)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    os.environ["DATALOOP_RULES"] = str(target)
    return target


def demo_fleet() -> SimConfig:
    """Highway and merge traffic (where the scenario library needs no map), small camera
    frames, corner cases often enough that a few minutes of driving yield clips; every
    vehicle runs what the release director assigns it, installed over the air."""
    return replace(
        SimConfig(),
        roads={"highway": 0.7, "merge": 0.3},
        camera_size=(160, 96),
        corner_cases_per_hour={
            "cut_in": 90.0,
            "hard_brake": 60.0,
            "stalled_vehicle": 30.0,
            "pedestrian_crossing": 10.0,
        },
        model_version="ota",
    )
