"""A fleet: N vehicles, each driving M minutes as consecutive drive segments, one process per
vehicle; optionally uploading through the real upload path and reporting telemetry."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.drive import DriveResult, simulate_drive
from dataloop.fleet.simulator.traffic import rng_for
from dataloop.policy.bundle_policy import load_policy
from dataloop.processes import CONTEXT, process_pool

SEGMENT_GAP_S = 2.0
NS = 1_000_000_000


@dataclass
class VehicleReport:
    vehicle: str
    model_version: str
    drives: list[dict] = field(default_factory=list)
    km: float = 0.0
    seconds: float = 0.0
    disengagements: int = 0
    crashes: int = 0
    faults: int = 0
    uploaded: int = 0

    def telemetry(self) -> dict:
        per_1000 = 1000 * self.disengagements / self.km if self.km else 0.0
        return {
            "vehicle": self.vehicle,
            "model_version": self.model_version,
            "km": round(self.km, 3),
            "drive_seconds": round(self.seconds, 1),
            "disengagements": self.disengagements,
            "disengagements_per_1000km": round(per_1000, 2),
            "errors": self.crashes,
            "faults_injected": self.faults,
            "drives": [d["drive"] for d in self.drives],
        }


def vehicle_id(index: int) -> str:
    return f"veh-{index:04d}"


def _simulate_vehicle(
    index: int,
    seed: int,
    minutes: float,
    start_ns: int,
    out: str,
    config: SimConfig,
    lake: str | None,
    progress,
) -> VehicleReport:
    vehicle = vehicle_id(index)
    rng = rng_for(seed, index)
    store = None
    if lake:
        from dataloop.lake import open_store

        store = open_store(lake)
    if config.model_version == "ota" and store is not None:  # what the director assigns (#8)
        from dataloop.fleet.ota import vehicle_policy

        policy = vehicle_policy(store, vehicle, Path(out) / vehicle / "ota")
    else:
        policy = load_policy(config.model_version, store)  # a bundle: from the fleet's lake
    report = VehicleReport(vehicle, policy.model_version)
    carry: dict[str, float] = {}
    t_ns, left, k = start_ns, minutes * 60.0, 0
    out_dir = Path(out)
    while left > 1.0:
        stamp = datetime.fromtimestamp(t_ns / NS, UTC).strftime("%Y%m%dT%H%M%S")
        drive = f"{stamp}-{k:03d}"
        path = out_dir / vehicle / f"{drive}.mcap"
        path.parent.mkdir(parents=True, exist_ok=True)
        result = simulate_drive(
            path,
            vehicle=vehicle,
            drive=drive,
            seed=int(rng.integers(2**31)),
            rng=rng,
            start_ns=t_ns,
            policy=policy,
            config=config,
            carry=carry,
            max_seconds=left,
        )
        _record(report, result)
        if store is not None:
            from dataloop.fleet.uploader import upload_drive

            upload_drive(store, path, vehicle=vehicle, drive=drive, trigger="continuous")
            report.uploaded += 1
        seconds = (result.end_ns - result.start_ns) / NS
        left -= seconds
        t_ns = result.end_ns + int(SEGMENT_GAP_S * NS)
        k += 1
        if progress is not None:
            progress.put(seconds)
    if store is not None:
        write_telemetry(store, report, start_ns, t_ns)
    return report


def _record(report: VehicleReport, result: DriveResult) -> None:
    truth = result.truth
    result.path.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
    report.drives.append(
        {
            "drive": result.drive,
            "path": str(result.path),
            "road": result.road,
            "conditions": result.condition,
            "km": round(result.km, 3),
            "seconds": (result.end_ns - result.start_ns) / NS,
            "start_ns": result.start_ns,
            "disengagements": result.disengagements,
            "corner_cases": sum(c["applied"] for c in truth["corner_cases"]),
            "faults": len(truth["faults"]),
        }
    )
    report.km += result.km
    report.seconds += (result.end_ns - result.start_ns) / NS
    report.disengagements += result.disengagements
    report.crashes += int(truth["crashed"])
    report.faults += len(truth["faults"])


def write_telemetry(store, report: VehicleReport, start_ns: int, end_ns: int) -> str:
    """The vehicle's report for the release stage: model running, km, disengagements, errors."""
    from dataloop.lake.layout import telemetry_key
    from dataloop.lake.store import ObjectExists

    start = datetime.fromtimestamp(start_ns / NS, UTC)
    end = datetime.fromtimestamp(end_ns / NS, UTC)
    key = telemetry_key(report.vehicle, start, end)
    body = {**report.telemetry(), "from": start.isoformat(), "to": end.isoformat()}
    with contextlib.suppress(ObjectExists):  # the same run reported already
        store.put(key, json.dumps(body, indent=1, sort_keys=True).encode())
    return key


def simulate_fleet(
    *,
    vehicles: int,
    minutes: float,
    seed: int,
    out: Path,
    start: datetime,
    config: SimConfig | None = None,
    lake: str | None = None,
    workers: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[VehicleReport]:
    """Simulate the fleet, one process per vehicle (at most ``workers`` at once). The same
    seed and start give byte-identical logs."""
    config = config or SimConfig()
    start_ns = int(start.timestamp()) * NS
    workers = workers or min(vehicles, os.cpu_count() or 1)
    with CONTEXT.Manager() as manager, process_pool(workers) as pool:
        queue = manager.Queue()
        futures = [
            pool.submit(
                _simulate_vehicle, i, seed, minutes, start_ns, str(out), config, lake, queue
            )
            for i in range(1, vehicles + 1)
        ]
        while True:
            finished = all(f.done() for f in futures)
            while not queue.empty():
                seconds = queue.get()
                if on_progress:
                    on_progress(seconds)
            if finished:
                break
            time.sleep(0.2)
        reports = [f.result() for f in futures]
    return sorted(reports, key=lambda r: r.vehicle)
