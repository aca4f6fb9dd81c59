"""Ingest and quality in a process that can be told to die (SIGKILL, as ``kill -9``) at an
exact point: ``python -m tests.faults.crashy LAKE [STAGES] [POINT N]``.

Points: ``decode`` (inside decoding, at the N-th chunk), ``parquet`` (a table's Parquet bytes
written to the temporary file, not yet published), ``pointer`` (a pointer's replacement half
written, not yet swapped in), ``verdict`` (the same for quality's pointers). STAGES is
``ingest`` or ``ingest,quality``, or ``upload`` (the file and vehicle in
``CRASHY_UPLOAD_FILE``/``CRASHY_UPLOAD_VEHICLE``) with the point ``part`` (after N parts were
sent). Prints ``done``.

LAKE may be ``s3://bucket/prefix`` (the server from the usual variables): there a write is one
request that lands whole or not at all, so ``parquet`` and ``pointer``/``verdict`` die just
before the table's or the pointer's PUT, and a kill from outside may cut a request mid-body.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _armed(point: str, key: str, data: bytes) -> bool:
    """Whether a pointer write is one the point dies at: any (``pointer``), or quality's
    (``verdict``): its hour summaries and the verdict sections of the drive ledger."""
    if point != "verdict":
        return True
    return key.startswith("quality/") or (key.startswith("ledger/") and b'"verdict": {' in data)


def _arm_s3(point: str, due) -> None:
    """The S3 forms of ``parquet``, ``pointer`` and ``verdict``: die before the PUT."""
    from dataloop.lake.s3 import S3Store

    if point == "parquet":
        real_put = S3Store.put

        def put(self, key: str, data: bytes, **kwargs):
            if key.startswith("tables/") and due():
                _die()
            return real_put(self, key, data, **kwargs)

        S3Store.put = put  # type: ignore[method-assign]
        return
    real_swap = S3Store.swap_pointer

    def swap(self, key: str, data: bytes, expected):
        if _armed(point, key, data) and due():
            _die()
        return real_swap(self, key, data, expected)

    S3Store.swap_pointer = swap  # type: ignore[method-assign]


def arm(point: str, n: int, *, s3: bool = False) -> None:
    """Make the n-th passage through ``point`` kill this process."""
    from dataloop.ingest import decode
    from dataloop.lake.local import LocalStore
    from dataloop.lake.s3 import S3Store

    count = {"calls": 0}

    def due() -> bool:
        count["calls"] += 1
        return count["calls"] >= n

    if point == "part":
        for cls in (LocalStore, S3Store):
            real_part = cls.put_part

            def put_part(self, *args, _real=real_part, **kwargs):
                if due():
                    _die()  # the upload's earlier parts wait on the server, nothing is visible
                return _real(self, *args, **kwargs)

            cls.put_part = put_part  # type: ignore[method-assign]
        return
    if point in ("parquet", "pointer", "verdict") and s3:
        _arm_s3(point, due)
        return
    if point == "decode":
        real_chunk = decode._decode_chunk

        def decode_chunk(*args, **kwargs):
            if due():
                _die()
            return real_chunk(*args, **kwargs)

        decode._decode_chunk = decode_chunk
    elif point == "parquet":
        real_publish = LocalStore._publish

        def publish(self, tmp: Path, key: str, metadata):
            if key.startswith("tables/") and due():
                _die()  # the Parquet bytes are in a temporary file, not under the key
            return real_publish(self, tmp, key, metadata)

        LocalStore._publish = publish
    elif point in ("pointer", "verdict"):
        real_swap = LocalStore.swap_pointer

        def swap(self, key: str, data: bytes, expected):
            if _armed(point, key, data) and due():
                self._tmp().write_bytes(data[: len(data) // 2])
                _die()
            return real_swap(self, key, data, expected)

        LocalStore.swap_pointer = swap
    else:
        raise ValueError(point)


def run(lake: str, stages: list[str]) -> None:
    from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
    from dataloop.lake.local import LocalStore
    from dataloop.lake.s3 import S3Store

    store = S3Store.from_url(lake) if lake.startswith("s3://") else LocalStore(lake)
    if stages == ["upload"]:
        from dataloop.fleet.uploader import upload_drive

        path, vehicle = os.environ["CRASHY_UPLOAD_FILE"], os.environ["CRASHY_UPLOAD_VEHICLE"]
        upload_drive(store, path, vehicle=vehicle, part_size=5 * 1024 * 1024)
        return
    hours = arrival_hours(store, upload_days(store))
    for hour in hours:
        ingest_hour(store, hour)
    if "quality" in stages:
        from dataloop.quality.hour import check_hour
        from dataloop.quality.suites import load_suites

        suites = load_suites()
        for hour in hours:
            check_hour(store, hour, suites)


if __name__ == "__main__":
    lake, stages = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "ingest").split(",")
    if len(sys.argv) > 4:
        arm(sys.argv[3], int(sys.argv[4]), s3=lake.startswith("s3://"))
    run(lake, stages)
    print("done", flush=True)
