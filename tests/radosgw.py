"""A throwaway Ceph cluster with radosgw for the tests: one monitor and one memstore OSD on
loopback under a temporary folder, radosgw serving S3 over HTTP and HTTPS (a self-signed
certificate made here), and an admin user with the caps bootstrap needs.

Why radosgw: it is the one S3 server that installs here (Debian's ``radosgw``, ``ceph-mon``,
``ceph-osd``) and enforces IAM: inline user policies, ``s3:prefix`` conditions, bucket policies
and signatures. moto accepts every request. Starting takes ~15 s, so one cluster serves the whole
test session. Every daemon runs in the foreground as our child (with a parent-death signal, so a
killed pytest leaves none behind) and is stopped by its pid at teardown.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from tests.helpers import free_port

BINARIES = (
    "ceph",
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph-authtool",
    "monmaptool",
)
ADMIN_CAPS = "users=*;buckets=*;metadata=*;usage=*;zone=*;user-policy=*"
START_TIMEOUT_S = 90.0


@dataclass
class Radosgw:
    """A running radosgw: endpoints, the admin identity, and helpers to make clients."""

    root: Path
    endpoint: str
    https_endpoint: str
    ca_file: Path
    access_key: str
    secret_key: str
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)
    started_in_s: float = 0.0

    def client(
        self,
        service: str = "s3",
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        https: bool = False,
    ) -> Any:
        """A boto3 client for this server (admin identity unless keys are given)."""
        return boto3.client(
            service,
            endpoint_url=self.https_endpoint if https else self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            verify=str(self.ca_file) if https else None,
            # no aws-chunked checksum trailers over TLS: radosgw 16 does not read them
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def spawn(self, *args: str) -> None:
        """Start a daemon of this cluster in the foreground, its output appended under log/."""
        log = (self.root / "log" / f"{args[0]}.out").open("ab")
        c = ["-c", str(self.root / "ceph.conf")]
        self.procs.append(
            subprocess.Popen([*args, *c, "-f"], stdout=log, stderr=log, preexec_fn=_die_with_parent)
        )

    def gateway_alive(self) -> bool:
        return (
            bool(self.procs)
            and self.procs[-1].args[0] == "radosgw"
            and (self.procs[-1].poll() is None)
        )

    def gateway_log(self, lines: int = 40) -> str:
        """The gateway's last words: its output and the end of its log (a crash's backtrace)."""
        out = (self.root / "log" / "radosgw.out").read_text(errors="replace").splitlines()
        log = (self.root / "log" / "client.rgw.a.log").read_text(errors="replace").splitlines()
        return "\n".join(["radosgw.out:", *out[-lines:], "client.rgw.a.log:", *log[-lines:]])

    @contextlib.contextmanager
    def crash_reported(self) -> Iterator[None]:
        """A failure while the gateway lies dead carries its last words."""
        try:
            yield
        except Exception as e:
            if not self.gateway_alive():
                raise AssertionError(f"radosgw died:\n{self.gateway_log()}") from e
            raise

    def restart_gateway(self) -> None:
        """A new radosgw process on the same cluster and ports (a clean notification state)."""
        gateway = self.procs[-1]
        assert gateway.args[0] == "radosgw", gateway.args
        if gateway.poll() is None:
            gateway.terminate()  # radosgw 16 may take minutes to shut down: its grace is 10 s
            try:
                gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait(timeout=30)
        self.procs.pop()
        self.spawn("radosgw", "-n", "client.rgw.a")
        s3 = self.client(https=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        _wait("radosgw", lambda: _http_answers(self.endpoint), self.procs, deadline)
        _wait("radosgw over TLS", lambda: s3.list_buckets() is not None, self.procs, deadline)

    def admin(self, *args: str) -> Any:
        """``radosgw-admin`` against this cluster; its JSON output parsed."""
        proc = _run("radosgw-admin", "-c", str(self.root / "ceph.conf"), *args)
        return json.loads(proc.stdout) if proc.stdout.strip() else None


def _missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {proc.stderr[-2000:]}")
    return proc


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when pytest dies, so no daemon outlives the session."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _self_signed(root: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost), and its key, for beast's ssl_endpoint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = root / "rgw.crt", root / "rgw.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _config(root: Path, fsid: str, mon_port: int, http: int, https: int) -> str:
    cert, key = _self_signed(root)
    return f"""[global]
fsid = {fsid}
mon_host = v1:127.0.0.1:{mon_port}
mon_initial_members = a
ms_bind_msgr2 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {root}/keyring
run_dir = {root}/run
admin_socket = {root}/run/$name.asok
log_file = {root}/log/$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_data_avail_crit = 1
mon_data_avail_warn = 2
[mon]
mon_data = {root}/mon/$id
[osd]
osd_data = {root}/osd/$id
osd_objectstore = memstore
memstore_device_bytes = 2147483648
[client.rgw.a]
rgw_data = {root}/rgw
rgw_frontends = beast endpoint=127.0.0.1:{http} ssl_endpoint=127.0.0.1:{https} \
ssl_certificate={cert} ssl_private_key={key}
"""


def _keyring(root: Path) -> None:
    ring = str(root / "keyring")
    entities = [
        ("mon.", ["mon", "allow *"]),
        ("client.admin", ["mon", "allow *", "osd", "allow *", "mgr", "allow *"]),
        ("osd.0", ["mon", "allow profile osd", "osd", "allow *", "mgr", "allow profile osd"]),
        ("client.rgw.a", ["mon", "allow rw", "osd", "allow rwx"]),
    ]
    for n, (name, caps) in enumerate(entities):
        args = ["ceph-authtool", ring, "--gen-key", "-n", name]
        if n == 0:
            args.insert(2, "--create-keyring")
        for i in range(0, len(caps), 2):
            args += ["--cap", caps[i], caps[i + 1]]
        _run(*args)


def _wait(what: str, ready, procs: list[subprocess.Popen], deadline: float) -> None:
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited while waiting for {what}")
        try:
            if ready():
                return
        except (OSError, RuntimeError, subprocess.TimeoutExpired, BotoCoreError):
            pass  # not answering yet (botocore's connection errors are not OSErrors)
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def _http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
    except urllib.error.HTTPError:
        return True  # an S3 error document is an answer
    return True


def start(root: Path) -> Radosgw:
    """Build and start the cluster under ``root``; returns once S3 answers on both ports."""
    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT_S
    for sub in ("run", "log", "mon/a", "osd/0", "rgw"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port, http, https = free_port(), free_port(), free_port()
    conf = root / "ceph.conf"
    conf.write_text(_config(root, fsid, mon_port, http, https))
    _keyring(root)
    c = ["-c", str(conf)]
    _run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v1:127.0.0.1:{mon_port}]",
         str(root / "monmap"))  # fmt: skip
    _run("ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(root / "monmap"),
         "--keyring", str(root / "keyring"))  # fmt: skip
    gw = Radosgw(root, f"http://127.0.0.1:{http}", f"https://127.0.0.1:{https}",
                 root / "rgw.crt", "dataloop-admin", secrets.token_hex(20))  # fmt: skip

    try:
        gw.spawn("ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        _wait("the monitor", lambda: _run("ceph", *c, "osd", "new", osd_uuid, "0", timeout=10),
              gw.procs, deadline)  # fmt: skip
        _run("ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        gw.spawn("ceph-osd", "-i", "0")
        _wait("the OSD", lambda: " 1 up" in _run("ceph", *c, "osd", "stat", timeout=10).stdout,
              gw.procs, deadline)  # fmt: skip
        gw.spawn("radosgw", "-n", "client.rgw.a")
        _wait("radosgw", lambda: _http_answers(gw.endpoint), gw.procs, deadline)
        gw.admin("user", "create", "--uid", gw.access_key, "--display-name", "dataloop admin",
                 "--access-key", gw.access_key, "--secret-key", gw.secret_key,
                 "--caps", ADMIN_CAPS)  # fmt: skip
        s3 = gw.client(https=True)
        _wait("radosgw over TLS", lambda: s3.list_buckets() is not None, gw.procs, deadline)
    except BaseException:
        stop(gw)
        raise
    gw.started_in_s = time.monotonic() - t0
    return gw


def stop(gw: Radosgw) -> None:
    """Stop every daemon by its pid (radosgw, OSD, monitor: the reverse of the start)."""
    for proc in reversed(gw.procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="session")
def radosgw() -> Iterator[Radosgw]:
    """One Ceph cluster + radosgw for the whole session. Missing binaries fail in CI (.ci/run
    installs them) and skip elsewhere."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"no {', '.join(missing)}: .ci/run installs Debian's radosgw")
        pytest.skip(f"no {', '.join(missing)} (apt-get install radosgw ceph-mon ceph-osd)")
    root = Path(tempfile.mkdtemp(prefix="dataloop-ceph-"))
    gw = start(root)
    print(f"\nradosgw started in {gw.started_in_s:.1f} s at {gw.endpoint}")
    try:
        yield gw
    finally:
        stop(gw)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def radosgw_lake(radosgw: Radosgw, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on radosgw (owned by the admin); points the environment at it."""
    monkeypatch.setenv("DATALOOP_S3_ENDPOINT", radosgw.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", radosgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", radosgw.secret_key)
    # boto3's default session caches the first credentials it resolved (moto's, often)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    if not radosgw.gateway_alive():
        # A crash of the gateway would fail every later test; say so once, and go on on a new one.
        warnings.warn(f"radosgw had died; restarted\n{radosgw.gateway_log()}", stacklevel=1)
        radosgw.restart_gateway()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    radosgw.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/dataloop"
