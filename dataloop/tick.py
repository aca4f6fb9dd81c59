"""`dataloop tick`: evaluate the sensors once and run what they request, in this process.

It calls dagster-daemon's own sensor iteration, so the sensor cursor, tick history and run-key
dedupe are the very state the daemon reads and writes: ticking by hand and then starting
``dagster dev`` (or the reverse) never duplicates work. Runs the sensors queue are then launched
the way the run-queue daemon launches them, with an in-process launcher instead of a code server.

Do not tick while a daemon serves the same ``DAGSTER_HOME``: both would dequeue the same runs.
Ticks exclude each other (an advisory lock on ``$DAGSTER_HOME/tick.lock``): a second tick waits
for the first, then finds nothing left to do. A tick killed mid-run (``kill -9``) leaves its
run STARTED with no process behind it; as every tick run is in process and ticks are
exclusive, the next tick marks such a run failed and re-executes it (every step is idempotent,
so the re-execution ends with the lake an uninterrupted run would have left).
The location is loaded under the name ``dataloop``, as ``workspace.yaml`` names it; sensor
state is keyed by (location, repository, sensor) names.

Private Dagster APIs used (pinned dagster version; tests/test_cli.py covers them):
``dagster._daemon.sensor.execute_sensor_iteration`` and ``is_under_min_interval``,
``InProcessCodeLocationOrigin``, ``InProcessWorkspaceLoadTarget``, ``WorkspaceProcessContext``,
``InstanceRef.from_dir(overrides=...)`` and ``SyncInMemoryRunLauncher``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

LOCATION_NAME = "dataloop"
DEFAULT_DAGSTER_HOME = ".dataloop/dagster"
_IN_PROCESS_LAUNCHER = {
    "module": "dagster._core.launcher.sync_in_memory_run_launcher",
    "class": "SyncInMemoryRunLauncher",
}


@dataclass
class TickResult:
    rounds: int = 0
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, defaulting to ./.dataloop/dagster (created, and exported so that
    every process of this command agrees)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).absolute()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance():
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(
        str(dagster_home()), overrides={"run_launcher": _IN_PROCESS_LAUNCHER}
    )
    return DagsterInstance.from_ref(ref)


@contextlib.contextmanager
def _exclusive(home: Path):
    """Hold ``tick.lock`` for the tick's lifetime (the kernel releases it if we die)."""
    with (home / "tick.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _recover_orphans(instance, ctx, ours, logger: logging.Logger) -> list[str]:
    """Runs a killed tick left STARTING/STARTED: mark them failed, re-execute them whole."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy

    orphans = instance.get_runs(
        RunsFilter(tags=ours.tags, statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])
    )
    recovered = []
    for run in reversed(orphans):
        origin = run.remote_job_origin
        instance.report_run_failed(run, "the tick running it was killed")
        if origin is None:
            continue
        request = ctx.create_request_context()
        location = request.get_code_location(origin.location_name)
        job = location.get_job(
            JobSubsetSelector(
                location_name=origin.location_name,
                repository_name=origin.repository_origin.repository_name,
                job_name=run.job_name,
                op_selection=None,
                asset_selection=run.asset_selection,
                asset_check_selection=run.asset_check_selection,
            )
        )
        again = instance.create_reexecuted_run(
            request_context=request,
            parent_run=instance.get_run_by_id(run.run_id),
            code_location=location,
            remote_job=job,
            strategy=ReexecutionStrategy.ALL_STEPS,
            use_parent_run_tags=True,
        )
        logger.info("re-executing run %s (orphaned) as %s", run.run_id, again.run_id)
        instance.launch_run(again.run_id, request)
        recovered.append(again.run_id)
    return recovered


def _target():
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="dataloop.definitions",
            working_directory=os.getcwd(),
        ),
        location_name=LOCATION_NAME,
    )
    return InProcessWorkspaceLoadTarget([origin])


def tick(max_rounds: int = 10, logger: logging.Logger | None = None) -> TickResult:
    """Evaluate every running sensor, execute the runs they requested; repeat while a round
    requested runs (a run may make the next sensor fire), at most ``max_rounds`` times."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.storage.tags import SENSOR_NAME_TAG
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon import sensor as sensor_daemon
    from dagster._utils.error import SerializableErrorInfo

    logger = logger or logging.getLogger("dataloop.tick")
    result = TickResult()
    with (
        _exclusive(dagster_home()),
        _instance() as instance,
        WorkspaceProcessContext(instance, _target()) as ctx,
    ):
        entries = ctx.create_request_context().get_code_location_entries()
        sensors: set[str] = set()
        for name, entry in entries.items():
            if entry.load_error:
                raise RuntimeError(f"code location {name} failed to load:\n{entry.load_error}")
            for repo in entry.code_location.get_repositories().values():
                sensors.update(s.name for s in repo.get_sensors())
        ours = RunsFilter(tags={SENSOR_NAME_TAG: sorted(sensors)})
        for run_id in _recover_orphans(instance, ctx, ours, logger):
            run = instance.get_run_by_id(run_id)
            result.runs.append(
                {
                    "run_id": run.run_id,
                    "job": run.job_name,
                    "partition": run.tags.get("dagster/partition"),
                    "run_key": run.tags.get("dagster/run_key"),
                    "status": run.status.value,
                    "recovered": True,
                }
            )
        for _ in range(max_rounds):
            result.rounds += 1
            started = dt.datetime.now(dt.UTC)
            # An explicit tick always evaluates, even within a sensor's minimum interval.
            with mock.patch.object(sensor_daemon, "is_under_min_interval", return_value=False):
                for item in sensor_daemon.execute_sensor_iteration(
                    ctx, logger, threadpool_executor=None, submit_threadpool_executor=None
                ):
                    if isinstance(item, SerializableErrorInfo):
                        result.errors.append(item.to_string())
            queued = instance.get_runs(
                RunsFilter(tags=ours.tags, statuses=[DagsterRunStatus.QUEUED])
            )
            for run in reversed(queued):  # oldest first, as the queue daemon does
                if run.remote_job_origin and run.remote_job_origin.location_name in entries:
                    instance.launch_run(run.run_id, ctx.create_request_context())
            created = instance.get_runs(RunsFilter(tags=ours.tags, created_after=started))
            for run in reversed(created):
                run = instance.get_run_by_id(run.run_id)
                result.runs.append(
                    {
                        "run_id": run.run_id,
                        "job": run.job_name,
                        "partition": run.tags.get("dagster/partition"),
                        "run_key": run.tags.get("dagster/run_key"),
                        "status": run.status.value,
                    }
                )
            if not created:
                break
    return result
