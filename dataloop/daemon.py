"""Dagster's own daemon under `dataloop demo` and `dataloop tick`.

Both start ``dagster-daemon run`` (and, with a port, ``dagster-webserver``) as child processes
over ``$DAGSTER_HOME``: its sensors, automation conditions, schedules, run queue, run retries
and run monitoring are Dagster's, exactly as under ``dagster dev`` or in a deployment. This
module only starts and stops those processes and waits for the loop to come to rest, through
public instance APIs: run storage (queued, in-progress and retried runs) and tick history
(every running sensor has evaluated once more after the last run ended).

Only one dataloop process drives a ``DAGSTER_HOME`` at a time (``dataloop-daemon.lock``;
the kernel releases it when its holder dies). A holder killed with its daemon running leaves
``dataloop-daemon.pid``: the next one kills what is left of those process groups (the daemon,
its code server, a run worker), marks the runs they left in progress failed, and the
instance's run retries re-execute them (every step is idempotent). Where a daemon of someone
else's (``dagster dev``) already heartbeats on the same instance, ``dataloop demo`` uses it and
``dataloop tick`` refuses.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

LOCATION_NAME = "dataloop"
"""The code location's name, as workspace.yaml names it: sensor state is keyed by it."""
DEFAULT_DAGSTER_HOME = ".dataloop/dagster"
HEARTBEAT_LIVE_S = 90.0
"""A daemon heartbeats every 30 s; one seen within this many seconds is alive."""
_LOCK, _PIDS = "dataloop-daemon.lock", "dataloop-daemon.pid"
_UNFINISHED = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
_IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")

INSTANCE_YAML = """\
# Written by dataloop for a new DAGSTER_HOME; an existing dagster.yaml is used as it is.
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  max_concurrent_runs: 2
  dequeue_interval_seconds: 1
  tag_concurrency_limits:
    # One run per arrival hour at a time, as in production (infra/dagster.yaml); one release
    # step and one training at a time (each reads the state the last one left).
    - key: dagster/partition
      value: {applyLimitPerUniqueValue: true}
      limit: 1
    - key: dataloop/stage
      value: release
      limit: 1
    - key: dataloop/stage
      value: training
      limit: 1
# A run whose worker was killed is failed and retried; a failed step (a blocking check, a
# failed gate) is an answer and is not.
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  poll_interval_seconds: 10
"""

WORKSPACE_YAML = """\
# Written by dataloop: the one code location, named as the repository's workspace.yaml names it.
load_from:
  - python_module:
      module_name: dataloop.definitions
      working_directory: {cwd}
      location_name: {name}
"""


class DaemonBusy(RuntimeError):
    """Another daemon serves this DAGSTER_HOME."""


class NotQuiet(RuntimeError):
    """The loop did not come to rest in time."""


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, defaulting to ./.dataloop/dagster; created with INSTANCE_YAML when
    new, and exported so that every process of this command agrees."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).absolute()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def instance() -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME`` (see ``dagster_home``)."""
    import dagster as dg

    dagster_home()
    return dg.DagsterInstance.get()


def live_heartbeat(inst: dg.DagsterInstance) -> float | None:
    """Seconds since a daemon last heartbeat on this instance, if within HEARTBEAT_LIVE_S."""
    ages = [time.time() - b.timestamp for b in inst.get_daemon_heartbeats().values()]
    live = [a for a in ages if a < HEARTBEAT_LIVE_S]
    return min(live) if live else None


@dataclass
class Daemon:
    """A daemon serving the instance: started here (``procs``) or found running."""

    instance: dg.DagsterInstance
    procs: list[subprocess.Popen] = field(default_factory=list)
    ui: str | None = None
    since: float = field(default_factory=time.time)
    """When this process took the instance over (after waiting for its lock)."""

    @property
    def started_here(self) -> bool:
        return bool(self.procs)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: see its log")


def _die_with_parent() -> None:
    """In the child: SIGKILL when the dataloop process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """A child in a process group of its own (so its code servers and run workers can be
    stopped with it), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def _kill_groups(pids: list[int], grace_s: float, procs: list[subprocess.Popen] = ()) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace_s`` (our own
    children are reaped meanwhile, so an exited one does not count as alive)."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for proc in procs:
                proc.poll()
            if not any(_group_alive(p) for p in pids):
                break
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_leftovers(home: Path, inst: dg.DagsterInstance) -> list[str]:
    """What a killed holder left: its process groups are killed, its runs still in progress
    marked failed (the run retries re-execute them). The ids of those runs."""
    import dagster as dg

    pid_file = home / _PIDS
    if not pid_file.exists():
        return []
    _kill_groups([int(p) for p in pid_file.read_text().split()], grace_s=0.0)
    inst.wipe_daemon_heartbeats()
    orphans = inst.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus(s) for s in _IN_PROGRESS]))
    for run in orphans:
        inst.report_run_failed(run, "the dataloop process that ran its daemon was killed")
    pid_file.unlink()
    return [run.run_id for run in orphans]


@contextlib.contextmanager
def serve(*, ui_port: int | None = None, reuse: bool = True) -> Iterator[Daemon]:
    """A daemon for the instance while the block runs: one already heartbeating (``reuse``;
    else DaemonBusy), or ``dagster-daemon`` (and ``dagster-webserver`` on ``ui_port``) started
    here and stopped at the end."""
    home = dagster_home()
    with (home / _LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        since = time.time()  # before the leftovers: their runs' retries are ours to wait for
        inst = instance()
        _clear_leftovers(home, inst)
        age = live_heartbeat(inst)
        if age is not None:
            if not reuse:
                raise DaemonBusy(
                    f"a daemon serves DAGSTER_HOME={home} (heartbeat {age:.0f} s ago): it runs "
                    "the sensors already; watch it in the Dagster UI, or stop it and wait "
                    f"until its last heartbeat is {HEARTBEAT_LIVE_S:.0f} s old"
                )
            yield Daemon(inst, since=since)
            return
        workspace = home / "workspace.yaml"
        workspace.write_text(WORKSPACE_YAML.format(cwd=os.getcwd(), name=LOCATION_NAME))
        bin_dir = Path(sys.executable).parent
        procs = [
            _start(
                [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], home / "daemon.log"
            )
        ]
        ui = None
        if ui_port is not None:
            ui = f"http://127.0.0.1:{ui_port}"
            procs.append(
                _start(
                    [
                        str(bin_dir / "dagster-webserver"),
                        "-w",
                        str(workspace),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(ui_port),
                    ],
                    home / "webserver.log",
                )
            )
        (home / _PIDS).write_text(" ".join(str(p.pid) for p in procs))
        # `kill` (SIGTERM) stops the children too, as Ctrl-C does, by running the finally below.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            yield Daemon(inst, procs, ui, since)
        finally:
            _kill_groups([p.pid for p in procs], grace_s=5.0, procs=procs)
            for proc in procs:
                proc.wait()
            inst.wipe_daemon_heartbeats()
            (home / _PIDS).unlink(missing_ok=True)
            signal.signal(signal.SIGTERM, previous)


def _summary(record: Any) -> dict[str, Any]:
    run = record.dagster_run
    assets = sorted(k.to_user_string() for k in run.asset_selection or ())
    return {
        "run_id": run.run_id,
        # an automation run is Dagster's implicit asset job: named by its assets
        "what": "+".join(assets) if run.job_name == "__ASSET_JOB" else run.job_name,
        "job": run.job_name,
        "stage": run.tags.get("dataloop/stage"),
        "assets": assets,
        "partition": run.tags.get("dagster/partition"),
        "run_key": run.tags.get("dagster/run_key"),
        "status": run.status.value,
        "parent_run_id": run.tags.get("dagster/parent_run_id"),
        "recovered": "dagster/parent_run_id" in run.tags,
    }


@dataclass
class Rest:
    """What happened between ``since`` and the loop coming to rest."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    """Runs created since, oldest first (``_summary``)."""
    errors: list[str] = field(default_factory=list)
    """Failed sensor and schedule evaluations since."""


def _sensor_states(inst: dg.DagsterInstance) -> list[Any]:
    return [
        s
        for s in inst.all_instigator_state()
        if s.instigator_type.value == "SENSOR" and s.status.value in ("RUNNING", "DECLARED_IN_CODE")
    ]


def wait_quiet(
    daemon: Daemon,
    since: float,
    *,
    sensors: set[str],
    after: float | None = None,
    timeout_s: float = 1800.0,
    poll_s: float = 1.0,
) -> Rest:
    """Wait until nothing is queued, running or due for a retry, and each of ``sensors`` has
    finished an evaluation that began after ``after`` (default ``since``: the fleet may upload
    for a while, and the daemon starts on the first drives meanwhile) and after the last run
    ended: nothing is left to start. The runs are those created after ``since``. Raises
    NotQuiet after ``timeout_s``."""
    import dagster as dg

    inst = daemon.instance
    deadline = time.monotonic() + timeout_s
    while True:
        daemon.check_alive()
        records = inst.get_run_records(dg.RunsFilter(created_after=_utc(since)), ascending=True)
        busy = inst.get_runs(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus(s) for s in _UNFINISHED]), limit=1
        )
        retried = {r.dagster_run.tags.get("dagster/parent_run_id") for r in records}
        failed = inst.get_runs(
            dg.RunsFilter(updated_after=_utc(since), statuses=[dg.DagsterRunStatus.FAILURE])
        )
        awaiting = [
            r
            for r in failed
            if r.tags.get("dagster/will_retry") == "true" and r.run_id not in retried
        ]
        ends = [_ts(r.end_time or r.update_timestamp) for r in records]
        last = max([since if after is None else after, *ends])
        states = {s.instigator_name: s for s in _sensor_states(inst)}
        settled = not busy and not awaiting and sensors <= states.keys()
        errors: list[str] = []
        for name in sensors if settled else ():
            ticks = inst.get_ticks(
                states[name].instigator_origin_id, states[name].selector_id, after=since
            )
            errors += [f"{name}: {t.error.message}" for t in ticks if t.error is not None]
            done = [t for t in ticks if t.status.value != "STARTED" and t.timestamp > last]
            settled = settled and bool(done)
        if settled:
            return Rest([_summary(r) for r in records], errors)
        if time.monotonic() > deadline:
            raise NotQuiet(
                f"not at rest after {timeout_s:.0f} s: {len(busy)} run(s) unfinished, "
                f"{len(awaiting)} awaiting a retry, sensors seen: {sorted(states)}"
            )
        time.sleep(poll_s)


def running_sensors() -> set[str]:
    """The sensors that run by default in the code location (the daemon evaluates them)."""
    import dagster as dg

    from dataloop.definitions import defs

    return {
        s.name for s in defs().sensors or () if s.default_status == dg.DefaultSensorStatus.RUNNING
    }


def _utc(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _ts(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)
