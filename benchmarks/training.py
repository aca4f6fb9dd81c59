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

from dataloop.fleet.simulator.policy import EGO_FEATURES, HISTORY, MAX_OBJECTS, OBJECT_FEATURES
from dataloop.training.config import model_config
from dataloop.training.model import _net, _torch, features, fit
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
    """Samples/s of a bare training loop of the same network on the same-shaped tensors."""
    torch = _torch(config)
    x = torch.tensor(features(samples.ego, samples.objects))
    y = torch.tensor(samples.targets)
    net = _net(torch, x.shape[1], config)
    opt = torch.optim.AdamW(net.parameters(), lr=float(config["learning_rate"]))
    batch = int(config["batch_size"])
    start = time.perf_counter()
    for _ in range(int(config["epochs"])):
        for i in range(0, len(x), batch):
            loss = ((net(x[i : i + batch]) - y[i : i + batch]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(x) * int(config["epochs"]) / (time.perf_counter() - start)


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
        f"{args.samples} samples x {args.epochs} epochs, MLP {config['hidden']}, "
        f"{config['threads']} thread(s)"
    )
    print(f"  plain PyTorch loop {baseline:10.0f} samples/s")
    print(f"  dataloop fit       {ours:10.0f} samples/s   ratio {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
