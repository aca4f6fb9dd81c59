"""The driving model's forward pass in NumPy: per output (acceleration, steering), the mean
of its ensemble of small MLPs over the normalised features that output's ``inputs`` name.
The car and the simulator run it; only training (``dataloop.training.model``) needs torch."""

from __future__ import annotations

import numpy as np

from dataloop.policy.observation import EGO_FEATURES

OUTPUTS = ("acceleration", "steering")
CLIP = 5.0
"""Normalised inputs are clipped: a feature nearly constant in training (a rarely filled
object slot) must not blow up on held-out data."""


def output_inputs(config: dict) -> dict[str, dict | None]:
    """What each output's networks see: ``inputs[output]`` of the model config (None: the
    whole observation)."""
    inputs = config.get("inputs") or {}
    return {o: inputs.get(o) for o in OUTPUTS}


def members(config: dict) -> int:
    return int(config.get("ensemble", 1))


def net_name(member: int, output: str) -> str:
    """Prefix of one network's tensors in the bundle: ``<member>.<output>.<layer>.weight``."""
    return f"{member}.{output}"


def features(ego: np.ndarray, objects: np.ndarray, inputs: dict | None = None) -> np.ndarray:
    """The flattened observation the network sees: the last ``history`` frames of the ``ego``
    features named and of the nearest ``objects`` (``inputs`` of the model config; None:
    everything, (N, HISTORY*5 + HISTORY*MAX_OBJECTS*7))."""
    n = len(ego)
    if inputs:
        h = int(inputs["history"])
        cols = [EGO_FEATURES.index(f) for f in inputs["ego"]]
        ego = ego[:, -h:][..., cols]
        objects = objects[:, -h:, : int(inputs["objects"])]
    flat = [a.reshape(n, int(np.prod(a.shape[1:]))) for a in (ego, objects)]  # n may be 0
    return np.concatenate(flat, axis=1)


def normalise(x: np.ndarray, norm: dict) -> np.ndarray:
    return np.clip((x - np.asarray(norm["x_mean"])) / np.asarray(norm["x_std"]), -CLIP, CLIP)


def _mlp(weights: dict[str, np.ndarray], prefix: str, h: np.ndarray) -> np.ndarray:
    """One network's output (N,) for normalised inputs ``h`` (ReLU between layers)."""
    layers = sorted(
        {int(k[len(prefix) + 1 :].split(".")[0]) for k in weights if k.startswith(prefix + ".")}
    )
    for i, layer in enumerate(layers):
        h = h @ weights[f"{prefix}.{layer}.weight"].T + weights[f"{prefix}.{layer}.bias"]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


def predict(
    weights: dict[str, np.ndarray], norm: dict, config: dict, ego: np.ndarray, objects: np.ndarray
) -> np.ndarray:
    """Controls (N, 2) for observations (ego (N, HISTORY, 5), objects (N, HISTORY,
    MAX_OBJECTS, 7)): per output, the mean of its ensemble's networks (NumPy: the inference
    path)."""
    out = np.zeros((len(ego), len(OUTPUTS)))
    for j, (o, inputs) in enumerate(output_inputs(config).items()):
        h = normalise(features(ego, objects, inputs), norm[o])
        mean = np.mean([_mlp(weights, net_name(m, o), h) for m in range(members(config))], 0)
        out[:, j] = mean * norm[o]["y_std"] + norm[o]["y_mean"]
    return out
