"""The driving model: an MLP on the normalised, flattened observation -> (acceleration,
steering). Training is PyTorch (GPU when present); inference in the car and in simulation is
plain NumPy over the same weights, so a simulator worker needs no torch."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from dataloop.fleet.simulator.policy import EGO_FEATURES
from dataloop.training.samples import Samples

OUTPUTS = ("acceleration", "steering")
CLIP = 5.0
"""Normalised inputs are clipped: a feature nearly constant in training (a rarely filled
object slot) must not blow up on held-out data."""


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


def normalisation(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Per-feature mean and std of the training split (std floored: constant features)."""
    return {
        "x_mean": x.mean(0).tolist(),
        "x_std": np.maximum(x.std(0), 0.1).tolist(),
        "y_mean": y.mean(0).tolist(),
        "y_std": np.maximum(y.std(0), 1e-3).tolist(),
    }


def _torch(config: dict):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(int(config["seed"]))
    return torch


def _net(torch, n_in: int, config: dict):
    layers, width = [], n_in
    for h in config["hidden"]:
        layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU()]
        width = int(h)
    layers.append(torch.nn.Linear(width, len(OUTPUTS)))
    return torch.nn.Sequential(*layers)


def fit(samples: Samples, config: dict, on_epoch=None) -> dict[str, Any]:
    """Train on the ``train`` split and keep the epoch with the lowest ``val`` loss (early
    stopping; the last epoch when there is no val split); returns weights (NumPy, by name),
    normalisation, the loss histories and the epoch kept. ``on_epoch(epoch, loss)`` reports
    progress."""
    torch = _torch(config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train = samples.select(samples.split == "train")
    if not len(train):
        raise ValueError("the dataset has no samples in its train split")
    x = features(train.ego, train.objects, config.get("inputs"))
    norm = normalisation(x, train.targets)

    def tensors(part: Samples, x: np.ndarray):
        xs = np.clip((x - np.array(norm["x_mean"])) / np.array(norm["x_std"]), -CLIP, CLIP)
        ys = (part.targets - np.array(norm["y_mean"])) / np.array(norm["y_std"])
        w = part.weights / train.weights.mean()
        return (torch.tensor(a, dtype=torch.float32, device=device) for a in (xs, ys, w))

    X, Y, W = tensors(train, x)
    val = samples.select(samples.split == "val")
    VX, VY, VW = tensors(val, features(val.ego, val.objects, config.get("inputs")))
    net = _net(torch, X.shape[1], config).to(device)
    opt = torch.optim.AdamW(
        net.parameters(), lr=float(config["learning_rate"]), weight_decay=config["weight_decay"]
    )
    gen = torch.Generator().manual_seed(int(config["seed"]))
    batch, losses, val_losses = int(config["batch_size"]), [], []
    best = (math.inf, 0, None)
    for epoch in range(int(config["epochs"])):
        order = torch.randperm(len(X), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(X), batch):
            b = order[i : i + batch]
            loss = (W[b] * ((net(X[b]) - Y[b]) ** 2).mean(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / len(X))
        if len(VX):
            with torch.no_grad():
                val_losses.append(float((VW * ((net(VX) - VY) ** 2).mean(1)).mean()))
        score = val_losses[-1] if val_losses else -epoch
        if score < best[0]:
            best = (score, epoch + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
        if on_epoch:
            on_epoch(epoch + 1, losses[-1])
    weights = {k: v.cpu().numpy().astype(np.float32) for k, v in best[2].items()}
    return {
        "weights": weights,
        "normalisation": norm,
        "losses": losses,
        "val_losses": val_losses,
        "epoch_kept": best[1],
        "device": device,
    }


def forward(weights: dict[str, np.ndarray], norm: dict, x: np.ndarray) -> np.ndarray:
    """Predicted controls for flattened observations ``x`` (NumPy: the inference path)."""
    h = np.clip((x - np.asarray(norm["x_mean"])) / np.asarray(norm["x_std"]), -CLIP, CLIP)
    layers = sorted({int(k.split(".")[0]) for k in weights})
    for i, layer in enumerate(layers):
        h = h @ weights[f"{layer}.weight"].T + weights[f"{layer}.bias"]
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h * np.asarray(norm["y_std"]) + np.asarray(norm["y_mean"])


def open_loop(
    weights: dict[str, np.ndarray],
    norm: dict,
    samples: Samples,
    baseline: np.ndarray,
    inputs: dict | None = None,
) -> dict[str, float]:
    """Held-out (val + test) RMSE per output, of the model and of the constant baseline
    (the mean training control)."""
    held = samples.select(samples.split != "train")
    if not len(held):
        return {"held_out_samples": 0}
    pred = forward(weights, norm, features(held.ego, held.objects, inputs))
    out: dict[str, float] = {"held_out_samples": len(held)}
    for j, name in enumerate(OUTPUTS):
        out[f"rmse_{name}"] = float(np.sqrt(np.mean((pred[:, j] - held.targets[:, j]) ** 2)))
        out[f"baseline_rmse_{name}"] = float(
            np.sqrt(np.mean((baseline[j] - held.targets[:, j]) ** 2))
        )
    return out
