"""How a heavy stage's job executes its steps: one switch, ``DATALOOP_EXECUTOR``.

The heavy jobs (ingest, curation, training with its gate) are built with
``executor_def=stage_executor()``. By default a run executes its steps in its own process
(``in_process``): each run is already one Kubernetes Job or one worker process, and on a small
machine a process per step costs more (~2.8 s per step here) than small steps do.
``multiprocess`` runs each step in a process of its own on the run's machine; ``k8s`` runs one
Kubernetes Job per step, for steps that are long and need other resources (decode at fleet
scale, the simulation gate, training); ``celery`` sends each step to dagster-celery workers
through a broker, for sites without Kubernetes. Light jobs (the dataset, the release) stay in
process. With a distributed executor an arrival hour's ingest fans out by vehicle
(``hour_shards``), so one hour spreads over many pods or workers.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from dataloop.infra.pools import POOLS

# Per-step pods: requests per op, on top of the run pod's env and secrets (the run launcher's
# config, inherited). Keys are op names (an asset's, or ingest's shard op); others use the
# default.
K8S_STEP_RESOURCES: dict[str, dict[str, Any]] = {
    "default": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "ingest_shard": {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
    "compliant_drives": {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
}


def k8s_executor_config() -> dict[str, Any]:
    """k8s_job_executor's config: step pods in the run's namespace with the run's env."""
    resources = dict(K8S_STEP_RESOURCES)
    default = resources.pop("default")
    return {
        "max_concurrent": 16,  # steps of one run at once; pools bound them across runs
        "step_k8s_config": {"container_config": {"resources": default}},
        "per_step_k8s_config": {
            step: {"container_config": {"resources": r}} for step, r in resources.items()
        },
        "env_secrets": ["dataloop-s3"],
    }


EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")
DISTRIBUTED = ("k8s", "celery")
"""Executors whose steps may run on other machines than the run's."""


def executor_kind() -> str:
    """``DATALOOP_EXECUTOR``: one of ``EXECUTORS`` (default ``in_process``)."""
    kind = os.environ.get("DATALOOP_EXECUTOR", "in_process")
    if kind not in EXECUTORS:
        raise ValueError(f"DATALOOP_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {kind!r}")
    return kind


def celery_config() -> dict[str, Any]:
    """dagster-celery's config, shared by the executor and its workers (``dataloop infra
    celery-worker``): the broker ``DATALOOP_CELERY_BROKER`` (default a local Redis) and the
    result backend ``DATALOOP_CELERY_BACKEND`` (default the broker)."""
    broker = os.environ.get("DATALOOP_CELERY_BROKER", "redis://localhost:6379/0")
    return {
        "broker": broker,
        "backend": os.environ.get("DATALOOP_CELERY_BACKEND", broker),
        # A worker takes one step at a time: a step is minutes of one shard's decoding.
        "config_source": {"worker_prefetch_multiplier": 1, "task_acks_late": True},
    }


def hour_shards() -> int:
    """How many steps an arrival hour's per-drive work fans out to (by vehicle):
    ``DATALOOP_HOUR_SHARDS``; by default 1 where the steps share the run's machine (its
    worker processes use every core already) and the ``decode`` pool's limit where they do
    not. Never more than that limit: more shards than slots would only queue."""
    cap = POOLS["decode"]
    default = cap if executor_kind() in DISTRIBUTED else 1
    return max(1, min(int(os.environ.get("DATALOOP_HOUR_SHARDS", default)), cap))


def stage_executor() -> dg.ExecutorDefinition:
    """The executor ``DATALOOP_EXECUTOR`` names (read when the code location loads)."""
    kind = executor_kind()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_step_executor")
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(), name="celery_step_executor")
