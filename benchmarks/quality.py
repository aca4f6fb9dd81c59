"""The full quality suite on one drive-hour, two ways in the same run: great-expectations on
pandas and the same checks in DuckDB SQL; plus the production mix (each check on its engine).

    python benchmarks/quality.py [--drives 6] [--minutes 10]

Goal: one drive-hour checked in under 1 s of CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.ingest.decode import decode_log
from dataloop.quality.hour import run_checks
from dataloop.quality.suites import load_suites


def drive_hour(drives: int, minutes: float) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(drives):
            path = write_synthetic_drive(
                Path(tmp) / f"d{k}.mcap",
                vehicle="bench",
                drive=f"d{k}",
                start_ns=time.time_ns(),
                duration_s=minutes * 60,
                seed=k,
            )
            with path.open("rb") as f:
                for name, t in decode_log(f, vehicle="bench", drive=f"d{k}").tables.items():
                    t = t.append_column("row", pa.array(range(t.num_rows), pa.int64()))
                    parts.setdefault(name, []).append(t)
    return {name: pa.concat_tables(ts) for name, ts in parts.items()}


def timed(tables, suites, engine):
    start = time.process_time()
    results = run_checks(tables, suites, engine=engine)
    return time.process_time() - start, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    suites = load_suites()
    tables = drive_hour(args.drives, args.minutes)
    rows = sum(t.num_rows for t in tables.values())
    timed(tables, suites, "gx")  # warm up: GX import and context
    gx_cpu, gx_results = timed(tables, suites, "gx")
    db_cpu, db_results = timed(tables, suites, "duckdb")
    mix_cpu, _ = timed(tables, suites, None)
    n_gx = sum(1 for r in gx_results if r.engine == "gx") // args.drives
    hours = args.drives * args.minutes / 60
    print(
        f"drive-hours: {hours:.2f}, rows: {rows:,}, expectations: {len(suites.expectations)}"
        f" ({n_gx} run by GX in the GX pass)"
    )
    print(f"GX on pandas (+ SQL-only checks): {rows / gx_cpu:12,.0f} rows/s  {gx_cpu:6.2f} s CPU")
    print(f"DuckDB SQL, every check:          {rows / db_cpu:12,.0f} rows/s  {db_cpu:6.2f} s CPU")
    print(
        f"production mix (suite engines):   {rows / mix_cpu:12,.0f} rows/s  {mix_cpu:6.2f} s CPU"
        f"  -> {mix_cpu / hours:.2f} s CPU per drive-hour (goal < 1 s)"
    )
    same = {(r.expectation, r.vehicle, r.drive, r.unexpected) for r in gx_results} == {
        (r.expectation, r.vehicle, r.drive, r.unexpected) for r in db_results
    }
    print(f"both engines agree on every count: {same}")


if __name__ == "__main__":
    main()
