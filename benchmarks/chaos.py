"""Chaos report: the whole loop (upload, ingest, quality, labels, mining, dataset) over real
S3 HTTP (moto's server) behind the fault-injecting proxy, once per fault mix; then the
hostile-input corpus, with the peak RSS of the process that ingests it.

    python benchmarks/chaos.py [--drives 4] [--seed 12] [--mixes none,uniform-10,...] [--json]

For each mix: requests seen by the proxy, faults injected, drives uploaded, processed, lost
and duplicated (tests/faults/loop.py's audit), client-side re-runs (uploads re-tried by the
vehicle, Dagster runs re-tried), wall time. Goal: 0 lost and 0 duplicated for every mix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.faults.proxy import FaultMix  # noqa: E402

MIXES: dict[str, FaultMix] = {
    "none": FaultMix(),
    "uniform-10": FaultMix.uniform(0.10, stall_s=2.5),
    "uniform-20": FaultMix.uniform(0.20, stall_s=2.5),
    "errors-15": FaultMix(error_500=0.10, slowdown_503=0.05),
    "ambiguous-15": FaultMix(reset_after=0.06, truncate=0.06, stall_body=0.03, stall_s=2.5),
    "slow-20": FaultMix(slow=0.20, slow_s=0.3, reset_before=0.10),
}


def run_mix(name: str, mix: FaultMix, endpoint: str, drives: int, seed: int, logs_dir: Path):
    import boto3

    from dataloop.fleet.synthetic import write_synthetic_drive
    from dataloop.lake.s3 import S3Store
    from tests.faults.loop import LoopRun, audit, process_lake, upload_logs
    from tests.faults.proxy import FaultProxy

    logs = []
    for k in range(drives):
        vehicle, drive = f"veh-{k % 3}", f"{name}-{k}"
        path = logs_dir / f"{drive}.mcap"
        write_synthetic_drive(
            path,
            vehicle=vehicle,
            drive=drive,
            start_ns=time.time_ns() - 4_000_000_000,
            duration_s=4.0,
            seed=k,
        )
        logs.append((vehicle, drive, path))
    bucket = f"chaos-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    started = time.perf_counter()
    with FaultProxy(endpoint, mix, seed=seed) as proxy:
        os.environ["DATALOOP_S3_ENDPOINT"] = proxy.url
        url = f"s3://{bucket}/lake"
        store = S3Store.from_url(url)
        run = LoopRun()
        upload_logs(store, logs, run)
        process_lake(url, run)
        proxy.enabled = False  # the audit reads the lake as it is
        result = audit(store, logs)
        summary = proxy.summary()
    requests = summary.pop("requests")
    failing = sum(v for k, v in summary.items() if k != "slow")
    return {
        "mix": name,
        "fault_rate": round(mix.failing, 3),
        "requests": requests,
        "failed_requests": failing,
        "injected": summary,
        **result.figures(),
        "upload_reruns": run.upload_retries,
        "run_reruns": run.run_retries,
        "seconds": round(time.perf_counter() - started, 1),
        "rerun_causes": run.errors,
    }


def hostile_peak(tmp: Path) -> list[dict]:
    from tests.faults.hostile import build

    build(tmp / "corpus")
    out = subprocess.run(
        [sys.executable, "-m", "tests.faults.hostile", str(tmp / "corpus"), str(tmp / "lake")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--mixes", default=",".join(MIXES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.disable(logging.WARNING)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "chaos")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "chaos")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.setdefault("DATALOOP_S3_READ_TIMEOUT", "1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.mixes.split(","):
            rows.append(run_mix(name, MIXES[name], endpoint, args.drives, args.seed, Path(tmp)))
            if not args.json:
                r = rows[-1]
                print(
                    f"{r['mix']:>13}: {r['fault_rate']:.0%} failing, {r['failed_requests']}/"
                    f"{r['requests']} requests failed; drives {r['drives']} uploaded "
                    f"{r['uploaded']} processed {r['processed']} lost {r['lost']} duplicated "
                    f"{r['duplicated']} partial {r['partial']}; re-runs {r['upload_reruns']} "
                    f"uploads, {r['run_reruns']} runs; {r['seconds']} s",
                    flush=True,
                )
                for cause in r["rerun_causes"]:
                    print(f"{'':>15}re-run after {cause}")
        hostile = hostile_peak(Path(tmp))
    server.stop()
    peak = max(h["peak_rss_mib"] for h in hostile)
    wrong = [h["name"] for h in hostile[1:] if h["code"] != h["expected"]]
    if args.json:
        print(json.dumps({"mixes": rows, "hostile": hostile, "hostile_peak_rss_mib": peak}))
        return
    print(
        f"hostile corpus: {len(hostile) - 1} uploads, {len(hostile) - 1 - len(wrong)} "
        f"quarantined with the expected reason; peak RSS {peak:.0f} MiB"
    )
    for h in hostile[1:]:
        print(f"  {h['name']:>28}: {h['code']:<20} {h['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
