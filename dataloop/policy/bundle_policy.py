"""A model bundle as a driving policy: observation in, control out (the simulator's and the
simulation gate's interface)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dataloop.policy.bundle import Bundle, load_bundle
from dataloop.policy.network import predict
from dataloop.policy.observation import (
    BASELINE,
    BaselineExpert,
    Control,
    DrivingPolicy,
    Observation,
)

if TYPE_CHECKING:
    from dataloop.lake.store import ObjectStore


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


def load_policy(model_version: str, store: ObjectStore | None = None) -> DrivingPolicy:
    """The policy a vehicle runs for ``model_version``: the baseline driver, or the model
    bundle of that version in the lake (``store``, default ``$DATALOOP_LAKE``)."""
    if model_version == BASELINE:
        return BaselineExpert()
    from dataloop.lake.store import open_store

    return BundlePolicy(load_bundle(store or open_store(), model_version))
