"""Does driving make the model better? `dataloop demo` for several seeds, each in a fresh
folder (its own lake, Dagster instance and fleet), and the closed-loop score of each
iteration's new model on the gate's stock scenarios (the same scenarios every iteration).

    python benchmarks/loop.py [--seeds 0 1 2] [--iterations 3] [--vehicles 4] [--minutes 2]

Prints the score per seed and iteration, the mean and the seed-to-seed standard deviation
per iteration, and the gain of the last iteration over iteration 0 against that noise.
Iterations whose trigger did not fire carry the previous model's score.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_seed(seed: int, args: argparse.Namespace) -> tuple[list[dict], float]:
    folder = Path(tempfile.mkdtemp(prefix=f"loop-seed{seed}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATALOOP_", "DAGSTER_"))}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dataloop"), "demo", "--json"]
        + ["--iterations", str(args.iterations), "--seed", str(seed)]
        + ["--vehicles", str(args.vehicles), "--minutes", str(args.minutes)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), time.perf_counter() - t0


def carried(scores: list[float | None]) -> list[float]:
    out, last = [], 0.0
    for s in scores:
        last = s if s is not None else last
        out.append(last)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--vehicles", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=2.0)
    args = ap.parse_args()
    table: dict[int, list[float]] = {}
    for seed in args.seeds:
        iterations, seconds = run_seed(seed, args)
        table[seed] = carried([it["score"] for it in iterations])
        detail = ", ".join(
            f"[{it['index']}] score {it['score'] if it['score'] is None else round(it['score'], 3)}"
            f" gate {it['gate_passed']} clips {it['dataset_clips']}"
            f" dis/1000km {it['disengagements_per_1000km']:.0f}"
            f" fleet {'/'.join(m[:8] for m in it['fleet_models'])}"
            for it in iterations
        )
        print(f"seed {seed}: {seconds:.0f} s wall; {detail}", flush=True)
    k = args.iterations
    print("\n| seed | " + " | ".join(f"iter {i}" for i in range(k)) + " |")
    print("|---|" + "---|" * k)
    for seed, scores in table.items():
        print(f"| {seed} | " + " | ".join(f"{s:.3f}" for s in scores) + " |")
    columns = list(zip(*table.values(), strict=True))
    means = [statistics.mean(c) for c in columns]
    sds = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]
    print("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    print("| sd (seeds) | " + " | ".join(f"{s:.3f}" for s in sds) + " |")
    gains = [scores[-1] - scores[0] for scores in table.values()]
    noise = max(sds[0], sds[-1])
    print(
        f"\ngain of iteration {k - 1} over iteration 0: mean {statistics.mean(gains):+.3f} "
        f"(per seed {', '.join(f'{g:+.3f}' for g in gains)}); seed-to-seed sd {noise:.3f}; "
        f"{'larger' if statistics.mean(gains) > noise else 'NOT larger'} than the noise"
    )


if __name__ == "__main__":
    main()
