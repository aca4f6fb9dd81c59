"""Process pools whose workers start as fresh interpreters (``spawn``), never as forks.

A fork copies a parent that may be running threads (torch and OpenMP after a search, gRPC in
a Dagster code server, a test runner's workers): a lock held by one of them at fork time stays
held forever in the child, and native libraries then crash there (a segmentation fault while
importing pygame, seen under pytest-xdist). A spawned worker pays its imports once (about 3 s
for the simulator) and sees the environment of the moment it starts.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

CONTEXT = multiprocessing.get_context("spawn")


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=CONTEXT)
