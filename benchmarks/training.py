"""Training speed: samples per second of ``dataloop.training.model.fit`` (the loop the
``trained_model`` asset runs through Pipes, with normalisation, weighting and the
deterministic settings), next to a plain PyTorch forward + backward + step of the same network
on random tensors of the same shape, measured in the same run.

    python benchmarks/training.py [--samples 20000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dataloop.policy.network import OUTPUTS, features, members, output_inputs
from dataloop.policy.observation import EGO_FEATURES, HISTORY, MAX_OBJECTS, OBJECT_FEATURES
from dataloop.training.config import model_config
from dataloop.training.model import _net, _torch, fit
from dataloop.training.samples import Samples


def _samples(n: int, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    return Samples(
        rng.normal(size=(n, HISTORY, len(EGO_FEATURES))).astype(np.float32),
        rng.normal(size=(n, HISTORY, MAX_OBJECTS, len(OBJECT_FEATURES))).astype(np.float32),
        rng.normal(size=(n, 2)).astype(np.float32),
        np.ones(n, np.float32),
        np.array(["train"] * n),
        np.array(["cut_in"] * n),
        {},
    )


def plain(samples: Samples, config: dict) -> float:
    """Samples/s of a bare training loop of the same networks (every ensemble member of every
    output, on its inputs) on the same-shaped tensors."""
    torch = _torch(config)
    inputs = output_inputs(config)
    nets = [
        (torch.tensor(features(samples.ego, samples.objects, inputs[o]), dtype=torch.float32), j)
        for _ in range(members(config))
        for j, o in enumerate(OUTPUTS)
    ]
    modules = [_net(torch, x.shape[1], config) for x, _ in nets]
    y = torch.tensor(samples.targets)
    opt = torch.optim.AdamW(
        [p for m in modules for p in m.parameters()], lr=float(config["learning_rate"])
    )
    batch = int(config["batch_size"])
    start = time.perf_counter()
    for _ in range(int(config["epochs"])):
        for i in range(0, len(y), batch):
            loss = torch.stack(
                [
                    ((m(x[i : i + batch])[:, 0] - y[i : i + batch, j]) ** 2).mean()
                    for m, (x, j) in zip(modules, nets, strict=True)
                ]
            ).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(y) * int(config["epochs"]) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    config = {**model_config(), "epochs": args.epochs}
    samples = _samples(args.samples)
    baseline = plain(samples, config)
    start = time.perf_counter()
    fit(samples, config)
    ours = len(samples) * args.epochs / (time.perf_counter() - start)
    print(
        f"{args.samples} samples x {args.epochs} epochs, {members(config)} x {len(OUTPUTS)} "
        f"MLPs {config['hidden']}, "
        f"{config['threads']} thread(s)"
    )
    print(f"  plain PyTorch loop {baseline:10.0f} samples/s")
    print(f"  dataloop fit       {ours:10.0f} samples/s   ratio {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
