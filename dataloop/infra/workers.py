"""Every core of a worker for the per-drive work of an arrival hour: ``map_drives``.

Ingest, compliance and labels map one plain function over the hour's drives, quality over
shards of them. With ``DATALOOP_WORKERS`` above 1 (default: ``cores()``, the cores this
process may use) the items run in worker processes, one item per process at a time; ``1``
runs them here, one after another, with no pool (tests that wrap the store, to count or
break its calls, need that path).

- **Processes, not threads**: decoding, Parquet and OpenCV hold the GIL for much of a drive.
  The context is ``forkserver``, not ``fork``: the stages hold threads (boto3's, pyarrow's)
  that a fork would copy mid-state. The fork server imports the heavy libraries once
  (``PRELOAD``), and this process keeps its workers between hours and stages. Measured here
  (2 workers, a first drive's imports, load average 4.4): ``spawn`` 2.2 s (and ~4 s more
  per worker once quality imports great_expectations); the fork server's first start with
  its preloads 4.9 s, once per process; new workers from a running server 0.4 s; kept
  workers nothing. Each worker takes this process's environment (the workers are
  started anew when it changes) and its share of the cores for OpenCV, BLAS and pyarrow.
- **The job travels as its recipe**: the store as its folder or its URL and ``S3Options`` (so
  a lake resource's S3 settings travel, not only the environment's), the function and its
  arguments pickled once per map and opened once per worker.
- **A crash is one drive's**: every worker is a ``ProcessPoolExecutor`` of one process, fed
  one item at a time, so a worker that dies (a segfault in a decoder, the OOM killer,
  SIGKILL) breaks exactly one future; the worker is replaced and the other drives go on. The
  stage decides what a death means (ingest quarantines the upload: its bytes killed the
  decoder). An exception is that item's ``Failure`` too, in both paths; the stage records
  the others and then fails the hour with ``DrivesFailed``, as one drive's exception failed
  the hour before (the re-run redoes only the failed drives: per-drive work skips what is
  done).
- **Order**: ``on_done`` sees outcomes as they complete (progress logs); the returned list is
  in the order of the items, so records and indexes do not depend on timing.

Workers re-import the main module of a script as ``__mp_main__``: a script that maps drives
keeps its work under ``if __name__ == "__main__":`` (Dagster's, pytest's and ours do).
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dataloop.lake.store import ObjectStore

T = TypeVar("T")
R = TypeVar("R")

ENV = "DATALOOP_WORKERS"
PRELOAD = [
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "duckdb",
    "mcap.reader",
    "google.protobuf.message",
    "boto3",
    "pandas",
    "great_expectations",
]
"""Imported once by the fork server: what the stages' workers need and take long to import
(great_expectations alone ~3.5 s here; nothing of dataloop's own, so no module state is made
before a worker has its environment)."""


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota (``QUOTA PERIOD`` or ``max PERIOD``): a Kubernetes CPU limit."""


def cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity (a container's cpuset), capped by
    its cgroup's CPU quota (a pod's CPU limit, which leaves the affinity at every core of
    the node), rounded up."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            n = min(n, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable here: the affinity it is
    return max(1, n)


def worker_count() -> int:
    """``DATALOOP_WORKERS``, else ``cores()``."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return cores()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV} must be a whole number of processes, 1 or more, not {raw!r}")
    return n


@dataclass(frozen=True)
class Failure:
    """A drive whose work raised or whose worker died: ``reason`` says which and how."""

    item: Any
    reason: str
    died: bool = False
    trace: str = field(default="", compare=False)


class DrivesFailed(RuntimeError):
    """Drives of an hour whose work failed; every other drive of the hour was recorded."""

    def __init__(self, stage: str, failures: list[tuple[str, Failure]]):
        self.failures = [(name, f.reason) for name, f in failures]
        listed = "; ".join(f"{name}: {reason}" for name, reason in self.failures)
        super().__init__(f"{stage}: {len(failures)} drive(s) failed ({listed})")
        for name, f in failures:
            if f.trace:
                self.add_note(f"{name}:\n{f.trace}")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
"""Set in a worker (unless set already) to its share of the cores: OpenCV and BLAS would
each start a thread per core in every worker, and pyarrow's pool is sized the same way."""


def _init(env: dict[str, str], threads: int) -> None:
    """A worker's start: the environment of the process that started it, and libraries told
    to use the worker's share of the cores, not every core each."""
    import pyarrow

    os.environ.clear()
    os.environ.update(env)
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    pyarrow.set_cpu_count(threads)


def _call(recipe: bytes, fn: Callable[..., R], item: Any, args: tuple) -> R:
    """One drive in a worker; the store is opened once per worker and recipe (after the
    environment is set: an S3 client takes its credentials from it when it is made)."""
    global _store
    if _store is None or _store[0] != recipe:
        _store = (recipe, pickle.loads(recipe))
    return fn(_store[1], item, *args)


_job: tuple[bytes, tuple] | None = None  # a worker's current job: its bytes, unpickled


def _call(job: bytes, item: Any) -> Any:
    """One drive in a worker. The job (store, function, arguments) is unpickled once per
    worker and map (after the environment is set: an S3 client takes its credentials from
    it when it is made; a detector loads its model once)."""
    global _job
    if _job is None or _job[0] != job:
        _job = (job, pickle.loads(job))
    store, fn, args = _job[1]
    return fn(store, item, *args)


def _failure(item: Any, err: BaseException) -> Failure:
    """The drive's failure: the exception's line, and its traceback (a worker's included)."""
    reason = "".join(traceback.format_exception_only(err)).strip()
    return Failure(item, reason, trace="".join(traceback.format_exception(err)))


class _Lanes:
    """Worker processes, each a ``ProcessPoolExecutor`` of one, fed one drive at a time: a
    death breaks exactly one drive's future. This process keeps one set between hours and
    stages (the start-up is paid once); it is started anew when the environment changed."""

    def __init__(self) -> None:
        self.executors: list[ProcessPoolExecutor] = []
        self.env: dict[str, str] = {}
        self.threads = 1

    def ready(self, n: int) -> list[ProcessPoolExecutor]:
        env = dict(os.environ)
        if env != self.env:
            self.close()
            self.env = env
        self.threads = max(1, cores() // max(n, len(self.executors)))
        while len(self.executors) < n:
            self.executors.append(self._start())
        return self.executors[:n]

    def replace(self, k: int) -> None:
        """A fresh worker for lane ``k``, whose worker died."""
        self.executors[k].shutdown(wait=True)
        self.executors[k] = self._start()

    def _start(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_init, initargs=(self.env, self.threads)
        )

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=True, cancel_futures=True)
        self.executors = []


_shared, _shared_lock = _Lanes(), threading.Lock()
atexit.register(_shared.close)


def map_drives(
    fn: Callable[..., R],
    store: ObjectStore,
    items: Sequence[T],
    *args: Any,
    on_done: Callable[[R | Failure], None] | None = None,
    workers: int | None = None,
) -> list[R | Failure]:
    """``fn(store, item, *args)`` for every item, in ``workers`` processes (default:
    ``worker_count()``); one ``Failure`` per item that raised or whose worker died. ``fn``
    and ``args`` must pickle (module-level functions; the store pickles as its recipe)."""
    n = min(workers or worker_count(), len(items))
    out: list[Any] = [None] * len(items)
    if n <= 1:
        for i, item in enumerate(items):
            try:
                out[i] = fn(store, item, *args)
            except Exception as err:  # noqa: BLE001 - the drive's failure, reported by the stage
                out[i] = _failure(item, err)
            if on_done:
                on_done(out[i])
        return out

    # Two hours mapped at once in one process (threads): the second gets lanes of its own.
    try:
        job = pickle.dumps((store, fn, args))
    except (TypeError, AttributeError, pickle.PicklingError) as err:
        raise TypeError(
            f"the per-drive work cannot be sent to a worker process ({err}): make it pickle, "
            f"or set {ENV}=1"
        ) from err
    running: dict[Future, tuple[int, int]] = {}  # future -> (item, lane)
    todo = iter(range(len(items)))
    shared = _shared_lock.acquire(blocking=False)
    lanes = _shared if shared else _Lanes()

    def feed(k: int) -> None:
        i = next(todo, None)
        if i is not None:
            running[executors[k].submit(_call, job, items[i])] = (i, k)

    try:
        executors = lanes.ready(n)
        for k in range(n):
            feed(k)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i, k = running.pop(future)
                try:
                    out[i] = future.result()
                except BrokenProcessPool:
                    lanes.replace(k)
                    executors[k] = lanes.executors[k]
                    out[i] = Failure(items[i], "its worker process died", died=True)
                except Exception as err:  # noqa: BLE001 - as in the in-process path
                    out[i] = _failure(items[i], err)
                if on_done:
                    on_done(out[i])
                feed(k)
    except BaseException:
        lanes.close()  # interrupted: no worker goes on with a drive nobody waits for
        raise
    finally:
        if shared:
            _shared_lock.release()
        else:
            lanes.close()
    return out


def split(outcomes: list[R | Failure]) -> tuple[list[R], list[Failure]]:
    """The results that came back, and the failures, each in the order of the items."""
    results = [o for o in outcomes if not isinstance(o, Failure)]
    return results, [o for o in outcomes if isinstance(o, Failure)]
