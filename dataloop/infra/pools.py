"""Dagster concurrency pools per stage: how many steps of each kind run at once across the
whole deployment (op granularity, counted in the instance's storage, Postgres in production).

``infra/dagster.yaml`` gives unlisted pools ``default_limit``; the limits below are stored in
the instance by ``dataloop infra pools`` (or ``dagster instance concurrency set POOL N``), once
per deployment. An asset joins a pool with ``@dg.asset(pool=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance

POOLS: dict[str, int] = {
    # ingest: one streaming pass per drive (~37 MB/s/core); I/O-bound on the object store
    "decode": 16,
    # quality suites: ~0.8 s CPU per drive-hour, DuckDB in memory
    "quality": 16,
    # face/plate blurring: OpenCV over every frame, the heaviest per-drive step so far
    "anonymise": 8,
    # DuckDB over a day of tables (scenario mining): every core and GBs of memory per step
    "duckdb": 2,
    # closed-loop simulation: highway-env is pure-Python CPU (~11 drive-min per CPU-min)
    "simulation": 4,
    # training: one GPU job at a time per deployment
    "training": 1,
}


def apply_pools(instance: DagsterInstance, pools: dict[str, int] | None = None) -> dict[str, int]:
    """Store each pool's limit in the instance; returns what the instance now holds."""
    pools = POOLS if pools is None else pools
    storage = instance.event_log_storage
    for name, limit in pools.items():
        storage.set_concurrency_slots(name, limit)
    return {name: storage.get_concurrency_info(name).slot_count for name in pools}
