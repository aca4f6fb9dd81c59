"""Sensor faults injected at controllable rates, for the quality stage to catch: dropped
frames, camera freeze, GNSS jumps, the clock going backwards, NaN and out-of-range signals,
truncated files and missing channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataloop.fleet import contract

_DURATION_S = {
    "dropped_frames": (0.5, 2.0),
    "camera_freeze": (1.0, 3.0),
    "gnss_jump": (0.1, 0.3),
    "clock_backwards": (0.3, 1.0),  # how far back the clock steps
    "nan_signal": (0.2, 1.0),
    "out_of_range": (0.1, 0.5),
}
_MISSABLE = (contract.IMU.topic, contract.GNSS.topic, contract.OBJECTS.topic)


@dataclass
class FaultPlan:
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    """(start s, end s, fault) for signal faults; clock_backwards: (at, step back, ...)."""
    missing_topic: str | None = None
    truncate_at: float | None = None
    """Fraction of the file to keep."""
    applied: list[dict] = field(default_factory=list)

    def window(self, kind: str, t: float) -> tuple[float, float, str] | None:
        return next((w for w in self.windows if w[2] == kind and w[0] <= t < w[1]), None)

    def active(self, kind: str, t: float) -> bool:
        return self.window(kind, t) is not None


def plan_faults(rng: np.random.Generator, config, seconds: float, carry: dict) -> FaultPlan:
    plan = FaultPlan()
    for kind, per_hour in config.signal_faults_per_hour.items():
        budget = carry.get(kind, rng.uniform()) + per_hour * seconds / 3600.0
        n = int(budget)
        carry[kind] = budget - n
        for _ in range(n):
            start = float(rng.uniform(2.0, max(2.5, seconds - 4.0)))
            length = float(rng.uniform(*_DURATION_S[kind]))
            plan.windows.append((start, start + length, kind))
            plan.applied.append(
                {"type": kind, "t": round(start, 2), "duration_s": round(length, 2)}
            )
    p = config.file_faults_per_drive
    if rng.random() < p.get("missing_channel", 0.0):
        plan.missing_topic = str(rng.choice(_MISSABLE))
    if rng.random() < p.get("truncated_file", 0.0):
        plan.truncate_at = float(rng.uniform(0.4, 0.9))
    return plan


def truncate(path: Path, keep_fraction: float) -> None:
    """Cut the file, as a power loss during recording does."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(int(size * keep_fraction))
