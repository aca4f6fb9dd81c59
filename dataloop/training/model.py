"""The driving model: per output (acceleration, steering), an ensemble of small MLPs on the
normalised, flattened observation that output's ``inputs`` name; the prediction is the
ensemble's mean. Training is PyTorch (GPU when present); inference in the car and in
simulation is plain NumPy over the same weights (``dataloop.policy.network``), so a vehicle or
a simulator worker needs no torch.

Why per output: outside lane changes (which are no labels) the only steering the logs teach
is lane keeping, a function of the lane estimate; a steering network that also sees the
objects learns spurious turns from them and leaves the road. Why an ensemble: on the few
thousand frames of a young fleet, one network's closed-loop score depends on its random
initialisation by tens of points; the mean of five does not.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from dataloop.policy.network import (
    OUTPUTS,
    features,
    members,
    net_name,
    normalise,
    output_inputs,
    predict,
)
from dataloop.training.samples import Samples


def normalisation(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Per-feature mean and std of one output's inputs and its target over the training
    split (std floored: constant features)."""
    return {
        "x_mean": x.mean(0).tolist(),
        "x_std": np.maximum(x.std(0), 0.1).tolist(),
        "y_mean": float(y.mean()),
        "y_std": float(max(y.std(), 1e-3)),
    }


def _torch(config: dict):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(int(config["seed"]))
    return torch


def _net(torch, n_in: int, config: dict):
    """One network: ``hidden`` ReLU layers, one output."""
    layers, width = [], n_in
    for h in config["hidden"]:
        layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU()]
        width = int(h)
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def fit(samples: Samples, config: dict, on_epoch=None) -> dict[str, Any]:
    """Train every network (``ensemble`` members per output, each from its own random
    initialisation) on the ``train`` split, all on the same batches; returns weights (NumPy,
    by name), normalisation per output, the mean loss per epoch over the networks (train
    and ``val``) and the epoch kept: the last, or with ``early_stopping`` the one with the
    lowest val loss (worth it only when the val split is large and like the train split).
    ``on_epoch(epoch, loss)`` reports progress."""
    torch = _torch(config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train = samples.select(samples.split == "train")
    if not len(train):
        raise ValueError("the dataset has no samples in its train split")
    val = samples.select(samples.split == "val")
    inputs = output_inputs(config)
    xs = {o: features(train.ego, train.objects, inputs[o]) for o in OUTPUTS}
    norm = {o: normalisation(xs[o], train.targets[:, j]) for j, o in enumerate(OUTPUTS)}

    def tensors(part: Samples, x: dict[str, np.ndarray]):
        def t(a: np.ndarray):
            return torch.tensor(a, dtype=torch.float32, device=device)

        X = {o: t(normalise(x[o], norm[o])) for o in OUTPUTS}
        Y = {
            o: t((part.targets[:, j] - norm[o]["y_mean"]) / norm[o]["y_std"])
            for j, o in enumerate(OUTPUTS)
        }
        return X, Y, t(part.weights / train.weights.mean())

    X, Y, W = tensors(train, xs)
    VX, VY, VW = tensors(val, {o: features(val.ego, val.objects, inputs[o]) for o in OUTPUTS})
    heads = [(m, o) for m in range(members(config)) for o in OUTPUTS]
    nets = torch.nn.ModuleList(_net(torch, X[o].shape[1], config) for _, o in heads).to(device)

    def loss(x, y, w, b=slice(None)) -> Any:
        per_net = [
            (w[b] * (net(x[o][b])[:, 0] - y[o][b]) ** 2).mean()
            for net, (_, o) in zip(nets, heads, strict=True)
        ]
        return torch.stack(per_net).mean()

    opt = torch.optim.AdamW(
        nets.parameters(), lr=float(config["learning_rate"]), weight_decay=config["weight_decay"]
    )
    gen = torch.Generator().manual_seed(int(config["seed"]))
    batch, losses, val_losses = int(config["batch_size"]), [], []
    keep_best = bool(config.get("early_stopping")) and len(VW) > 0
    best = (math.inf, 0, None)
    for epoch in range(int(config["epochs"])):
        order = torch.randperm(len(W), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(W), batch):
            b = order[i : i + batch]
            step = loss(X, Y, W, b)
            opt.zero_grad()
            step.backward()
            opt.step()
            total += float(step.detach()) * len(b)
        losses.append(total / len(W))
        if len(VW):
            with torch.no_grad():
                val_losses.append(float(loss(VX, VY, VW)))
        if keep_best and val_losses[-1] < best[0]:
            state = {k: v.detach().clone() for k, v in nets.state_dict().items()}
            best = (val_losses[-1], epoch + 1, state)
        if on_epoch:
            on_epoch(epoch + 1, losses[-1])
    if not keep_best:
        best = (None, int(config["epochs"]), nets.state_dict())
    weights = {}
    for key, value in best[2].items():  # "<index in heads>.<layer>.weight"
        index, tensor = key.split(".", 1)
        weights[f"{net_name(*heads[int(index)])}.{tensor}"] = value.cpu().numpy().astype(np.float32)
    return {
        "weights": weights,
        "normalisation": norm,
        "losses": losses,
        "val_losses": val_losses,
        "epoch_kept": best[1],
        "device": device,
    }


def open_loop(
    weights: dict[str, np.ndarray],
    norm: dict,
    config: dict,
    samples: Samples,
    baseline: np.ndarray,
) -> dict[str, float]:
    """Held-out (val + test) RMSE per output, of the model and of the constant baseline
    (the mean training control)."""
    held = samples.select(samples.split != "train")
    if not len(held):
        return {"held_out_samples": 0}
    pred = predict(weights, norm, config, held.ego, held.objects)
    out: dict[str, float] = {"held_out_samples": len(held)}
    for j, name in enumerate(OUTPUTS):
        out[f"rmse_{name}"] = float(np.sqrt(np.mean((pred[:, j] - held.targets[:, j]) ** 2)))
        out[f"baseline_rmse_{name}"] = float(
            np.sqrt(np.mean((baseline[j] - held.targets[:, j]) ** 2))
        )
    return out
