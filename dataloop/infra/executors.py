"""How a heavy stage's job executes its steps: one switch, ``DATALOOP_EXECUTOR``.

The heavy jobs (ingest, curation, training with its gate) are built with
``executor_def=stage_executor()``. By default a run executes its steps in its own process
(``in_process``): each run is already one Kubernetes Job or one worker process, and on a small
machine a process per step costs more (~2.8 s per step here) than small steps do.
``multiprocess`` runs each step in a process of its own on the run's machine; ``k8s`` runs one
Kubernetes Job per step, for steps that are long and need other resources (decode at fleet
scale, the simulation gate, training). Light jobs (the dataset, the release) stay in process.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

# Per-step pods: requests per step key, on top of the run pod's env and secrets (the run
# launcher's config, inherited). Keys are asset/step names; unknown keys use the default.
K8S_STEP_RESOURCES: dict[str, dict[str, Any]] = {
    "default": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "decoded_drives": {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
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


EXECUTORS = ("in_process", "multiprocess", "k8s")


def stage_executor() -> dg.ExecutorDefinition:
    """The executor ``DATALOOP_EXECUTOR`` names (read when the code location loads)."""
    kind = os.environ.get("DATALOOP_EXECUTOR", "in_process")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_step_executor")
    raise ValueError(f"DATALOOP_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {kind!r}")
