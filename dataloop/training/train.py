"""Train one driving model on one dataset version and write its bundle.

Run by the ``trained_model`` asset through Dagster Pipes (``python -m
dataloop.training.train``): the asset passes the lake, dataset version, config and trigger in
the Pipes extras; this process reports progress (epoch, loss) as Pipes log lines and custom
messages and the result as an asset materialization whose data version is the bundle hash.
``train`` is the same work as a plain function (tests, benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dataloop.curation import datasets as D
from dataloop.lake import layout as L
from dataloop.lake.store import ObjectStore, open_store
from dataloop.lineage.graph import record_node
from dataloop.policy import bundle as B
from dataloop.policy.network import output_inputs
from dataloop.training.config import code_version
from dataloop.training.model import fit, open_loop
from dataloop.training.samples import build_samples


def train(
    store: ObjectStore,
    dataset_version: str,
    config: dict[str, Any],
    on_epoch: Callable[[int, float], None] | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build samples, fit, evaluate open loop, write the bundle, point ``latest`` at it and
    record its lineage node. Returns the model card plus the bundle version."""
    record = D.find_version(store, dataset_version)
    if record is None:
        raise LookupError(f"dataset {dataset_version!r} not found")
    t0 = time.perf_counter()
    samples = build_samples(store, record["version"], config)
    t1 = time.perf_counter()
    result = fit(samples, config, on_epoch)
    t2 = time.perf_counter()
    train_targets = samples.targets[samples.split == "train"]
    baseline = train_targets.mean(0)
    metrics = {
        **open_loop(result["weights"], result["normalisation"], config, samples, baseline),
        "final_loss": result["losses"][-1],
        "train_samples": int(len(train_targets)),
    }
    card = {
        "name": config["name"],
        "dataset": {"name": record["name"], "version": record["version"], "seq": record["seq"]},
        "code_version": code_version(),
        "seed": int(config["seed"]),
        "metrics": metrics,
        "samples": samples.report,
        "constant_baseline": baseline.tolist(),
        "label_source": "expert frames: baseline drives and safety-driver takeovers",
        "observation": {o: i or "everything" for o, i in output_inputs(config).items()},
        "epoch_kept": result["epoch_kept"],
    }
    version = B.write_bundle(store, result["weights"], result["normalisation"], config, card)
    B.set_latest(store, version, card)
    record_node(
        store,
        "model",
        version,
        [{"kind": "dataset", "version": record["version"]}],
        dataset_seq=record["seq"],
        code_version=card["code_version"],
        **(info or {}),
    )
    return {
        **card,
        "version": version,
        "device": result["device"],
        "losses": result["losses"],
        "seconds": {"samples": t1 - t0, "fit": t2 - t1},
        "samples_per_s": len(train_targets) * len(result["losses"]) / max(t2 - t1, 1e-9),
    }


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        config = extras["config"]
        store = open_store(extras["lake"])
        pipes.log.info(f"training on dataset {extras['dataset_version']} ({extras['trigger']})")

        def on_epoch(epoch: int, loss: float) -> None:
            pipes.log.info(f"epoch {epoch}/{config['epochs']} loss {loss:.5f}")
            pipes.report_custom_message({"epoch": epoch, "loss": loss})

        out = train(
            store,
            extras["dataset_version"],
            config,
            on_epoch,
            info={"trigger": extras["trigger"], "dagster_run_id": pipes.get_extra("run_id")},
        )
        m = out["metrics"]
        pipes.report_asset_materialization(
            data_version=out["version"],
            metadata={
                "bundle": {"raw_value": L.bundle_prefix(out["version"]), "type": "path"},
                "dataset_version": out["dataset"]["version"],
                "dataset_seq": out["dataset"]["seq"],
                "code_version": out["code_version"],
                "seed": out["seed"],
                "device": out["device"],
                "samples": out["samples"]["samples"],
                "train_samples": m["train_samples"],
                "final_loss": m["final_loss"],
                "metrics": {"raw_value": m, "type": "json"},
                "train_samples_per_s": round(out["samples_per_s"], 1),
                **{k: v for k, v in m.items() if k.startswith(("rmse_", "baseline_rmse_"))},
            },
        )


if __name__ == "__main__":
    main()
