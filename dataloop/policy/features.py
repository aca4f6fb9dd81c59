"""The observation's features, built in one place: live in the simulator (from what the car
perceives at each step) and offline in training (from the same signals read back from the
drive log), so a model sees the same numbers in both."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from dataloop.policy.observation import HISTORY, MAX_OBJECTS, OBJECT_FEATURES


def ego_row(
    speed: float, acceleration: float, yaw_rate: float, lateral: float, heading_error: float
) -> np.ndarray:
    """One frame of ego features, in the order of ``EGO_FEATURES``."""
    return np.array([speed, acceleration, yaw_rate, lateral, heading_error], dtype=np.float64)


def object_frame(objects: Iterable[Mapping]) -> np.ndarray:
    """One frame of the nearest ``MAX_OBJECTS`` objects (ego frame), nearest first (a stable
    sort by distance), zero-padded; rows in the order of ``OBJECT_FEATURES``."""
    nearest = sorted(objects, key=lambda o: math.hypot(o["x"], o["y"]))[:MAX_OBJECTS]
    frame = np.zeros((MAX_OBJECTS, len(OBJECT_FEATURES)))
    for i, o in enumerate(nearest):
        frame[i] = (1.0, o["x"], o["y"], o["vx"], o["vy"], o["length"], o["width"])
    return frame


def window(end: int) -> np.ndarray:
    """Frame indices of the history ending at frame ``end`` (oldest first): before the
    drive has a second of history, its first frame repeats."""
    return np.clip(np.arange(end - HISTORY + 1, end + 1), 0, None)


class History:
    """The frames of one drive so far; ``latest`` gives the last second of them."""

    def __init__(self) -> None:
        self.ego: list[np.ndarray] = []
        self.objects: list[np.ndarray] = []

    def append(self, ego: np.ndarray, objects: np.ndarray) -> None:
        self.ego.append(ego)
        self.objects.append(objects)
        del self.ego[:-HISTORY], self.objects[:-HISTORY]

    def latest(self) -> tuple[np.ndarray, np.ndarray]:
        idx = window(len(self.ego) - 1)
        return np.stack(self.ego)[idx], np.stack(self.objects)[idx]
