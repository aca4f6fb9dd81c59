"""How a heavy stage's job executes its steps.

By default a run executes its steps in its own process (``in_process_executor``): each run is
already one Kubernetes Job (K8sRunLauncher), and a step per pod would cost more than small
steps do. A stage whose steps are long and need different resources (decode at fleet scale,
the simulation gate, training) switches to one Kubernetes Job per step by building its job with
``executor_def=stage_executor()`` and deploying with ``DATALOOP_EXECUTOR=k8s``.
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


def stage_executor() -> dg.ExecutorDefinition:
    """``in_process_executor``, or ``k8s_job_executor`` when ``DATALOOP_EXECUTOR=k8s``."""
    kind = os.environ.get("DATALOOP_EXECUTOR", "in_process")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_step_executor")
    raise ValueError(f"DATALOOP_EXECUTOR must be in_process or k8s, not {kind!r}")
