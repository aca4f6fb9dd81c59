"""The one small interface every driving policy implements: observation in, control out.

The baseline is the expert driver (highway-env's IDM for speed, MOBIL for lane changes, a
pursuit controller for steering). Models the loop trains (#6) and releases (#8) implement the
same interface, loaded from their bundle by ``dataloop.policy.bundle_policy.load_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

HISTORY = 10
"""Observation history: the last second at 10 Hz."""
MAX_OBJECTS = 8
"""Nearest objects in the observation."""
EGO_FEATURES = ("speed", "acceleration", "yaw_rate", "lateral_offset", "heading_error")
OBJECT_FEATURES = ("present", "x", "y", "vx", "vy", "length", "width")
BASELINE = "baseline"


@dataclass(frozen=True)
class Control:
    acceleration: float
    """m/s^2, positive forward."""
    steering: float
    """road-wheel angle in rad, left positive (ISO 8855)."""


@dataclass(frozen=True)
class Observation:
    """What the car perceives: ego state and the nearest objects over the last second, in
    the ego frame (x forward, y left), oldest first."""

    ego: np.ndarray
    """(HISTORY, len(EGO_FEATURES))"""
    objects: np.ndarray
    """(HISTORY, MAX_OBJECTS, len(OBJECT_FEATURES)), nearest first, zero-padded."""
    expert: Control
    """What the expert driver would do now. Privileged: only the baseline acts on it; it is
    the imitation label, never an input of a learned model."""


class DrivingPolicy(Protocol):
    model_version: str

    def act(self, observation: Observation) -> Control: ...


class BaselineExpert:
    """The fleet's expert driver, model version ``baseline``."""

    model_version = BASELINE

    def act(self, observation: Observation) -> Control:
        return observation.expert
