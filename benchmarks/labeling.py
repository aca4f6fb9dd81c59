"""Offboard labelling speed and quality on fleet-simulator drives, in the same run:
drive-hours labelled per CPU-hour, against the same labeller with the 4-state matrix
smoother it had until 2026-12 (the baseline: tests/test_labeling.py's reference), and
onboard vs offboard metrics against ground truth.

    python benchmarks/labeling.py [--vehicles 2] [--minutes 3]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from unittest.mock import patch

import pyarrow.parquet as pq
from mcap.reader import make_reader

from dataloop.fleet.contract import GROUND_TRUTH_OBJECTS
from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.ingest.decode import decode_log
from dataloop.labeling import offboard
from dataloop.labeling.hour import METRICS
from dataloop.labeling.offboard import label_drive, load_params
from dataloop.labeling.score import score
from dataloop.quality.suites import rules_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_labeling import _one_track as four_state  # noqa: E402 - the baseline smoother


def measure(vehicles: int = 2, minutes: float = 3.0) -> dict:
    """Drive-hours labelled per CPU-hour over a simulated fleet's drives, and each metric's
    mean over the drives, onboard and offboard."""
    params = load_params(rules_dir() / "labeling" / "offboard.yaml")
    config = replace(
        SimConfig(), file_faults_per_drive={"truncated_file": 0.0, "missing_channel": 0.0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        reports = simulate_fleet(
            vehicles=vehicles,
            minutes=minutes,
            seed=5,
            out=Path(tmp),
            start=datetime(2026, 11, 25, 8, tzinfo=UTC),
            config=config,
        )
        cpu, baseline_cpu, seconds = 0.0, 0.0, 0.0
        sums = {side: dict.fromkeys(METRICS, 0.0) for side in ("onboard", "offboard")}
        n = 0
        for r in reports:
            for d in r.drives:
                path = Path(d["path"])
                with path.open("rb") as f:
                    tables = decode_log(f, vehicle=r.vehicle, drive=d["drive"]).tables
                with path.open("rb") as f:
                    truth = next(
                        pq.read_table(io.BytesIO(a.data))
                        for a in make_reader(f).iter_attachments()
                        if a.name == GROUND_TRUTH_OBJECTS
                    )
                args = (tables["objects"], tables["vehicle_state"], params, r.vehicle, d["drive"])
                start = time.process_time()
                labels = label_drive(*args)
                cpu += time.process_time() - start
                with patch.object(offboard, "smooth_track", four_state):
                    start = time.process_time()
                    label_drive(*args)
                    baseline_cpu += time.process_time() - start
                seconds += d["seconds"]
                for side, table, col in (
                    ("onboard", tables["objects"], "object_id"),
                    ("offboard", labels, "track_id"),
                ):
                    for m, v in score(table, truth, col).items():
                        sums[side][m] += v
                n += 1
    return {
        "drives": n,
        "drive_hours": seconds / 3600,
        "cpu_s": cpu,
        "drive_hours_per_cpu_hour": seconds / cpu,
        "baseline_drive_hours_per_cpu_hour": seconds / baseline_cpu,
        "metrics": {side: {m: v / n for m, v in sums[side].items()} for side in sums},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vehicles", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=3.0)
    args = ap.parse_args()
    r = measure(args.vehicles, args.minutes)
    print(
        f"{r['drives']} drives, {r['drive_hours']:.3f} drive-hours labelled in "
        f"{r['cpu_s']:.2f} s CPU: {r['drive_hours_per_cpu_hour']:,.0f} drive-hours per CPU-hour"
    )
    base = r["baseline_drive_hours_per_cpu_hour"]
    print(
        f"  with the 4-state matrix smoother (baseline): {base:,.0f} drive-hours per CPU-hour; "
        f"{r['drive_hours_per_cpu_hour'] / base:.2f}x"
    )
    print(f"{'metric':<30}{'onboard':>10}{'offboard':>10}")
    for m in METRICS:
        print(f"{m:<30}{r['metrics']['onboard'][m]:>10.4f}{r['metrics']['offboard'][m]:>10.4f}")


if __name__ == "__main__":
    main()
