"""Helpers shared by tests: committing uploads the way a (possibly hostile) client would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from dataloop.fleet import contract
from dataloop.fleet.logwriter import DriveLogWriter
from dataloop.ingest.hour import HourReport, arrival_hours, ingest_hour, upload_days
from dataloop.lake.hashing import sha256_file
from dataloop.lake.layout import RawKeys
from dataloop.lake.manifest import UploadManifest
from dataloop.lake.store import ObjectStore

REPO = Path(__file__).resolve().parents[1]


def commit_raw(
    store: ObjectStore,
    path: Path,
    *,
    vehicle: str,
    drive: str,
    day: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> RawKeys:
    """Put a log and its manifest straight into raw/, bypassing the uploader's checks."""
    keys = RawKeys(date.fromisoformat(day) if day else datetime.now(UTC).date(), vehicle, drive)
    real_sha, real_size = sha256_file(path)
    with path.open("rb") as f:
        store.put_stream(keys.log, f)
    manifest = UploadManifest(
        vehicle=vehicle,
        drive=drive,
        log_key=keys.log,
        size=size if size is not None else real_size,
        sha256=sha256 or real_sha,
        start=None,
        end=None,
        software_version="test",
        model_version="baseline",
        trigger="test",
        uploaded_at=datetime.now(UTC).isoformat(),
    )
    store.put(keys.manifest, manifest.to_json())
    return keys


def ingest_everything(store: ObjectStore) -> dict[str, HourReport]:
    """Ingest every arrival hour of every upload day (tests may cross an hour)."""
    return {hour: ingest_hour(store, hour) for hour in arrival_hours(store, upload_days(store))}


@dataclass(frozen=True)
class ForeignChannel:
    """A channel outside the contract, as another logger would record it."""

    topic: str
    schema: str
    schema_encoding: str
    message_encoding: str
    payload: bytes
    messages: int = 3
    schema_data: bytes = b""


def ros2_payload(name: str, message: dict) -> bytes:
    """A ROS 2 message (a dict) as CDR bytes, encoded by mcap-ros2-support's serializer from
    the standard definition, as its writer does."""
    from mcap_ros2._dynamic import serialize_dynamic

    from dataloop.fleet.ros2_msgs import definition

    return serialize_dynamic(name, definition(name))[name](message)


def rerecord(
    src: Path,
    dst: Path,
    *,
    drop: Iterable[str] = (),
    copies: Mapping[str, tuple[str, Callable[[bytes], bytes]]] | None = None,
    drive: str | None = None,
) -> Path:
    """``src`` as another logger would have recorded it: without the topics ``drop``, with
    each message of a topic in ``copies`` also on a second topic (``{topic: (second topic,
    payload -> payload)}``, same schema): a second camera, say; as drive ``drive``."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    drop, copies = set(drop), copies or {}
    with src.open("rb") as f, dst.open("wb") as out:
        reader = make_reader(f)
        writer = Writer(out)
        writer.start("dataloop", "test")
        schemas: dict[int, int] = {}
        channels: dict[str, int] = {}
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            if channel.topic in drop:
                continue
            if schema.id not in schemas:
                schemas[schema.id] = writer.register_schema(
                    schema.name, schema.encoding, schema.data
                )
            targets = [(channel.topic, message.data)]
            if channel.topic in copies:
                topic, transform = copies[channel.topic]
                targets.append((topic, transform(message.data)))
            for topic, data in targets:
                if topic not in channels:
                    channels[topic] = writer.register_channel(
                        topic, channel.message_encoding, schemas[schema.id]
                    )
                writer.add_message(
                    channels[topic], message.log_time, data, message.publish_time, message.sequence
                )
        for metadata in reader.iter_metadata():
            values = dict(metadata.metadata)
            if drive and metadata.name == contract.DRIVE_METADATA:
                values["drive"] = drive
            writer.add_metadata(metadata.name, values)
        writer.finish()
    return dst


def write_minimal_log(
    path: Path,
    *,
    vehicle: str = "veh-1",
    drive: str = "drive-1",
    seconds: float = 1.0,
    channels=contract.CHANNELS,
    extra_channel=None,
    foreign=(),
    raw_messages=(),
    t0: int | None = None,
    **writer_options,
) -> Path:
    """A short log with every contract channel (or a subset), optionally one extra channel
    ``(topic, message)``, ``foreign`` channels ``ForeignChannel`` written as raw payloads and
    ``raw_messages`` ``(contract topic, payload bytes)`` written as they are;
    ``writer_options`` go to DriveLogWriter (compression, chunking, any mcap Writer option);
    ``t0``: the first message time (default now)."""
    t0 = t0 or time.time_ns()
    with DriveLogWriter(
        path, vehicle=vehicle, drive=drive, channels=channels, **writer_options
    ) as log:
        if extra_channel:
            topic, message = extra_channel
            log._register(topic, type(message))
            log.write(topic, t0, message)
        mcap = log._writer
        for ch in foreign:
            schema = mcap.register_schema(ch.schema, ch.schema_encoding, ch.schema_data)
            channel = mcap.register_channel(ch.topic, ch.message_encoding, schema)
            for k in range(ch.messages):
                mcap.add_message(channel, t0 + k, ch.payload, t0 + k, sequence=k)
        for topic, payload in raw_messages:
            mcap.add_message(log._channel_ids[topic], t0, payload, t0)
        topics = {c.topic for c in channels}
        for k in range(int(seconds * 100)):
            t = t0 + k * 10_000_000
            if contract.IMU.topic in topics:
                log.imu(t, (0.1, 0.0, 9.81), (0.0, 0.0, 0.01))
            if k % 2 == 0 and contract.VEHICLE_STATE.topic in topics:
                log.vehicle_state(
                    t,
                    speed_mps=10.0,
                    steering_angle_rad=0.0,
                    accelerator=0.1,
                    brake=0.0,
                    yaw_rate_radps=0.01,
                )
            if k % 10 == 0:
                if contract.GNSS.topic in topics:
                    log.gnss(t, 48.1, 11.5, 500.0)
                if contract.OBJECTS.topic in topics:
                    log.objects(t, [{"id": 7, "object_class": "car", "x": 20.0, "y": 0.0}])
                if contract.CAMERA.topic in topics:
                    log.camera(t, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9")
    return path


def hourly_assets() -> list:
    """The hourly path from raw logs to labels, in graph order (the labeling module is
    reloaded so that it reads its parameters anew). Index 0 is the raw spec and index 3
    the blocking check: ``materialize_hours`` selects the rest."""
    import importlib

    import dataloop.defs.labeling.assets as labeling
    import dataloop.defs.quality.assets as quality
    import dataloop.defs.quality.compliance as compliance
    from dataloop.defs.ingest.assets import decoded_drives, raw_drive_logs

    labeling = importlib.reload(labeling)
    return [
        raw_drive_logs,
        decoded_drives,
        quality.drive_verdicts,
        quality.hour_fit_for_use,
        quality.approved_drives,
        compliance.compliant_drives,
        labeling.offboard_labels,
    ]


def materialize_hours(store, hours, assets, instance, selection=None):
    """Materialize ``assets`` for every hour (a local lake); returns the last result."""
    import dagster as dg

    from dataloop.defs.resources import LakeResource

    for hour in hours:
        result = dg.materialize(
            assets,
            partition_key=hour,
            instance=instance,
            resources={"lake": LakeResource(url=str(store.root))},
            selection=selection or [a for i, a in enumerate(assets) if i not in (0, 3)],
        )
        assert result.success
    return result


def simulated_lake(
    root: Path, config, *, vehicles: int, minutes: float, seed: int, start: datetime | None = None
):
    """A fleet-simulator fleet driven at ``start`` (default: a few minutes ago) with ``config``,
    uploaded now to a local lake under ``root`` and taken through every hourly asset:
    (store, reports, instance, hours). Drive ids are the drives' start times, so a fixed
    ``start`` makes everything keyed by drive (the dataset's split) the same in every run."""
    from datetime import timedelta

    import dagster as dg

    from dataloop.fleet.simulator.fleet import simulate_fleet
    from dataloop.lake.local import LocalStore

    store = LocalStore(root / "lake")
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes + 7)
    reports = simulate_fleet(
        vehicles=vehicles,
        minutes=minutes,
        seed=seed,
        out=root / "logs",
        start=start,
        config=config,
        lake=str(store.root),
    )
    instance = dg.DagsterInstance.ephemeral()
    hours = arrival_hours(store, upload_days(store))
    materialize_hours(store, hours, hourly_assets(), instance)
    return store, reports, instance, hours


def pipes_client() -> dict:
    """The Pipes client the code location provides (training, Spark applications)."""
    import dagster as dg

    return {"pipes_subprocess_client": dg.PipesSubprocessClient()}


def curate(store, instance, days: list[str]):
    """Mine every day's scenario index, then build the training dataset; returns the
    dataset's materialization result."""
    import dagster as dg

    from dataloop.defs.curation.assets import scenario_index, training_dataset
    from dataloop.defs.resources import LakeResource

    assets = [*hourly_assets(), scenario_index, training_dataset]
    resources = {"lake": LakeResource(url=str(store.root)), **pipes_client()}
    for day in days:
        assert dg.materialize(
            assets,
            partition_key=day,
            instance=instance,
            resources=resources,
            selection=[scenario_index],
        ).success
    return dg.materialize(
        assets, instance=instance, resources=resources, selection=[training_dataset]
    )


def at_once(n: int, fn) -> list:
    """Run ``fn(i)`` in n threads released at the same instant; re-raise any failure."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder: Path) -> tuple[str, subprocess.Popen]:
    """A throwaway Redis on loopback (Debian's redis-server; .ci/run installs it), in a
    session of its own: its URL and process, once it answers."""
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server is missing: .ci/run installs Debian's redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_group(proc, grace=10)
                raise RuntimeError("redis did not start") from None
            time.sleep(0.1)


def init_instance(home: str | Path) -> None:
    """Make a new Dagster home's SQLite storage, before processes that share it start: two
    processes creating it at once can both create its tables or stamp its schema version."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []


@contextlib.contextmanager
def daemon_beside(command: list[str], env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """``command`` (``dagster dev``, ``dagster-daemon run``) started in a process group of its
    own over ``env``'s ``DAGSTER_HOME``, until its daemon heartbeats; stopped after the block
    (SIGTERM, a bounded wait, then SIGKILL). The instance's storage is made before it starts
    (``init_instance``), as ``dataloop demo`` makes it."""
    import dagster as dg

    init_instance(env["DAGSTER_HOME"])
    proc = subprocess.Popen(
        command, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            deadline = time.monotonic() + 300
            while not instance.get_daemon_heartbeats():
                assert proc.poll() is None, f"{command[0]} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"no daemon heartbeat from {command[0]}"
                time.sleep(0.5)
        yield
    finally:
        stop_group(proc, grace=60)


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """Stop a process started in a session of its own: SIGTERM to its group, ``grace`` seconds,
    then SIGKILL; whatever is left of the group (a child outliving its leader) is killed."""
    with contextlib.suppress(ProcessLookupError):  # the group may be gone by any step
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace)


def lenient_rules(tmp_path: Path) -> Path:
    """The demo's rules, copied under ``tmp_path`` with the gate, rollout, split and trigger
    loosened and training shortened: the demo tests check the loop's wiring, not what half a
    minute of driving teaches (tests/test_demo.py's docstring)."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "assets", rules)
    gate_file = rules / "demo" / "gates" / "release.yaml"
    gate = yaml.safe_load(gate_file.read_text())
    gate["absolute"] = {
        "min_mean_score": 0.0,
        "max_at_fault_collision_rate": 1.0,
        "max_offroad_rate": 1.0,
    }
    gate["suite"]["stock"].update(seeds=[1, 2], seconds=6)
    gate["suite"]["from_logs"].update(max_clips=2, seconds=6)
    gate["suite"]["batched"].update(seeds=10, seconds=6)
    gate_file.write_text(yaml.safe_dump(gate))
    rollout_file = rules / "demo" / "release" / "rollout.yaml"
    rollout = yaml.safe_load(rollout_file.read_text())
    # Half a minute of driving is no sample of a disengagement rate: judge km only here
    # (halts and rollbacks: tests/test_ota.py).
    rollout.update(min_km_per_stage=0.2, max_disengagement_increase=1e6)
    rollout.update(max_errors_per_1000km=1e9, min_disengagement_slack_per_1000km=1e9)
    rollout_file.write_text(yaml.safe_dump(rollout))
    curation_file = rules / "curation" / "training.yaml"  # a few drives: every one trains
    curation = yaml.safe_load(curation_file.read_text())
    curation["split"]["fractions"] = {"train": 1.0, "val": 0.0, "test": 0.0}
    curation_file.write_text(yaml.safe_dump(curation))
    trigger_file = rules / "training" / "trigger.yaml"
    trigger = yaml.safe_load(trigger_file.read_text())
    trigger.update(min_new_clips=1, min_dataset_clips=1)
    trigger_file.write_text(yaml.safe_dump(trigger))
    model_file = rules / "training" / "model.yaml"
    model = yaml.safe_load(model_file.read_text())
    model.update(epochs=5, ensemble=2)
    model_file.write_text(yaml.safe_dump(model))
    return rules


def run_dataloop(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``dataloop ARGS`` in ``cwd``; it must exit 0 (its stderr's tail says why not)."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dataloop"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
