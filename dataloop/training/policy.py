"""A model bundle as a driving policy: observation in, control out (the simulator's and the
simulation gate's interface)."""

from __future__ import annotations

import numpy as np

from dataloop.fleet.simulator.policy import Control, Observation
from dataloop.training.bundle import Bundle
from dataloop.training.model import predict


class BundlePolicy:
    """Drives with a trained bundle; ignores the observation's privileged expert field."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.model_version = bundle.version

    def act(self, observation: Observation) -> Control:
        a, s = self._predict(observation.ego[None], observation.objects[None])[0]
        return Control(float(a), float(np.clip(s, -0.6, 0.6)))

    reads_objects = True

    def act_batch(self, obs) -> tuple[np.ndarray, np.ndarray]:
        """Every scenario of a batched simulation in one forward pass (``BatchObservation``:
        ego (B, HISTORY, 5), objects (B, HISTORY, MAX_OBJECTS, 7))."""
        out = self._predict(obs.ego, obs.objects)
        return out[:, 0].astype(np.float64), np.clip(out[:, 1], -0.6, 0.6).astype(np.float64)

    def _predict(self, ego: np.ndarray, objects: np.ndarray) -> np.ndarray:
        b = self.bundle
        return predict(b.weights, b.normalisation, b.config, ego, objects)
