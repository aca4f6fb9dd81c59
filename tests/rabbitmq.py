"""A throwaway RabbitMQ broker for the tests: Debian's ``rabbitmq-server`` (3.10, streams
built in), one node on loopback with its data, logs and Erlang cookie in a temporary folder,
no plugins. It starts in ~5 s, so one broker serves a test session (per xdist worker). It runs
in the foreground as our child, with a parent-death signal, and is stopped at teardown; the
Erlang port mapper (``epmd``) it starts is shared and stays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, stop_group
from tests.radosgw import _die_with_parent

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_TIMEOUT_S = 60.0


@dataclass
class Broker:
    host: str
    port: int
    log: Path

    def url(self, queue: str, exchange: str | None = None) -> str:
        """A ``DATALOOP_UPLOAD_QUEUE`` spec for a stream on this broker."""
        query = f"queue={queue}" + (f"&exchange={exchange}" if exchange else "")
        return f"amqp://guest:guest@{self.host}:{self.port}/?{query}"


def _answers(port: int) -> bool:
    import amqp

    try:
        with amqp.Connection(host=f"127.0.0.1:{port}", connect_timeout=2):
            return True
    except (OSError, amqp.exceptions.AMQPError):
        return False


def start(root: Path) -> tuple[Broker, subprocess.Popen]:
    port = free_port()
    (root / "enabled_plugins").write_text("[].\n")
    # The broker blocks publishers below 50 MB of free disk by default; a CI disk may be low.
    (root / "rabbitmq.conf").write_text("disk_free_limit.absolute = 10MB\n")
    env = {
        **os.environ,
        "HOME": str(root),  # the Erlang cookie
        "RABBITMQ_NODENAME": f"dataloop-{uuid.uuid4().hex[:8]}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
        "RABBITMQ_LOGS": "-",
    }
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SERVER],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc, grace=10)
            raise RuntimeError(f"rabbitmq-server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return Broker("127.0.0.1", port, log), proc


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Broker]:
    """One RabbitMQ broker for the session. A missing server fails in CI (.ci/run installs
    it) and skips elsewhere."""
    if not Path(SERVER).exists():
        if os.environ.get("CI"):
            pytest.fail("no rabbitmq-server: .ci/run installs Debian's rabbitmq-server")
        pytest.skip("no rabbitmq-server (apt-get install rabbitmq-server)")
    root = Path(tempfile.mkdtemp(prefix="dataloop-rabbitmq-"))
    t0 = time.monotonic()
    broker, proc = start(root)
    print(f"\nrabbitmq started in {time.monotonic() - t0:.1f} s on port {broker.port}")
    try:
        yield broker
    finally:
        stop_group(proc, grace=15)
        shutil.rmtree(root, ignore_errors=True)
