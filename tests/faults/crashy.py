"""Ingest and quality in a process that can be told to die (SIGKILL, as ``kill -9``) at an
exact point: ``python -m tests.faults.crashy LAKE [STAGES] [POINT N]``.

Points: ``decode`` (inside decoding, at the N-th chunk), ``parquet`` (a table's Parquet bytes
written to the temporary file, not yet published), ``pointer`` (a pointer's replacement half
written, not yet swapped in), ``verdict`` (the same for quality's pointers). STAGES is
``ingest`` or ``ingest,quality``. Prints ``done``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, n: int) -> None:
    """Make the n-th passage through ``point`` kill this process."""
    from dataloop.ingest import decode
    from dataloop.lake.local import LocalStore

    count = {"calls": 0}

    def due() -> bool:
        count["calls"] += 1
        return count["calls"] >= n

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
        prefix = "quality/" if point == "verdict" else ""

        def swap(self, key: str, data: bytes, expected):
            if key.startswith(prefix) and due():
                self._tmp().write_bytes(data[: len(data) // 2])
                _die()
            return real_swap(self, key, data, expected)

        LocalStore.swap_pointer = swap
    else:
        raise ValueError(point)


def run(lake: str, stages: list[str]) -> None:
    from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
    from dataloop.lake.local import LocalStore

    store = LocalStore(lake)
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
        arm(sys.argv[3], int(sys.argv[4]))
    run(lake, stages)
    print("done", flush=True)
