"""Ingest throughput against plain MCAP iteration over the same files, in the same run.

    python benchmarks/ingest.py [--drives 6] [--minutes 1] [--repeats 3] [--lake s3://...]

Baseline: ``mcap.reader.make_reader(f).iter_messages()`` over every file, doing nothing with the
messages. Ingest: the hour asset's work (hash every byte, check CRCs, decode every message
through its adapter into columns, write zstd Parquet to the lake, write the records). Twice: on
the contract's protobuf logs (goal >= 1.2x) and on the same drives recorded as ROS 2 MCAP
(CDR, goal >= 0.7x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mcap.reader import make_reader

from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
from dataloop.lake import open_store


def plain_read(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        with p.open("rb") as f:
            for _ in make_reader(f).iter_messages():
                pass
    return time.perf_counter() - start


def ingest(paths: list[Path], lake: str | None, workdir: Path, i: int) -> float:
    fresh = f"run-{i}-{time.time_ns()}"  # a fresh lake per repeat: nothing is skipped
    store = open_store(f"{lake.rstrip('/')}/{fresh}" if lake else str(workdir / fresh))
    for p in paths:
        upload_drive(store, p, vehicle="bench")
    start = time.perf_counter()
    for hour in arrival_hours(store, upload_days(store)):
        report = ingest_hour(store, hour)
        assert all(d["status"] == "ingested" for d in report.drives if not d.get("skipped"))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lake", help="lake URL (default: a temporary local folder)")
    args = ap.parse_args()
    for log_format, goal in (("protobuf", 1.2), ("ros2", 0.7)):
        measure(args, log_format, goal)


def measure(args: argparse.Namespace, log_format: str, goal: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = [
            write_synthetic_drive(
                work / f"d{k}.mcap",
                vehicle="bench",
                drive=f"d{k}",
                start_ns=time.time_ns(),
                duration_s=args.minutes * 60,
                seed=k,
                log_format=log_format,
            )
            for k in range(args.drives)
        ]
        mb = sum(p.stat().st_size for p in paths) / 1e6
        messages = sum(
            make_reader(p.open("rb")).get_summary().statistics.message_count for p in paths
        )
        plain_read(paths)  # warm the page cache and imports
        ingest(paths[:1], args.lake, work, -1)  # and ingest's first-call costs
        plain = [plain_read(paths) for _ in range(args.repeats)]
        ingested = [ingest(paths, args.lake, work, i) for i in range(args.repeats)]
    plain_mbs = mb / statistics.median(plain)
    ingest_mbs = mb / statistics.median(ingested)
    print(f"{log_format}: {args.drives} drives, {mb:.1f} MB, {messages} messages")
    print(f"  plain MCAP iteration: {plain_mbs:8.1f} MB/s  (median of {args.repeats})")
    print(f"  ingest:               {ingest_mbs:8.1f} MB/s  (median of {args.repeats})")
    print(f"  ratio ingest/plain:   {ingest_mbs / plain_mbs:8.2f}x  (goal >= {goal:.2f}x)")


if __name__ == "__main__":
    main()
