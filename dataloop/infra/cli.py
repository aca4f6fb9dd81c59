"""`dataloop infra ...`: bucket bootstrap and concurrency pools. Registered by
``dataloop.cli.build_parser`` through ``add_infra_parser``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")


def _save_credentials(path: Path, vehicles: list[dict[str, Any]]) -> None:
    """New vehicles' secrets into a 0600 JSON file, keeping the ones earlier runs wrote."""
    created = {v["vehicle"]: v for v in vehicles if v.get("secret_key")}
    if not created:
        return
    known = {v["vehicle"]: v for v in json.loads(path.read_text())} if path.exists() else {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(sorted({**known, **created}.values(), key=lambda v: v["vehicle"]), f, indent=1)


def cmd_bootstrap(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError
    from minio.error import MinioAdminException, S3Error
    from urllib3.exceptions import HTTPError

    from dataloop.cli import UserError, err, out
    from dataloop.infra.bootstrap import BootstrapError, Target, bootstrap, read_vehicles
    from dataloop.infra.radosgw import RadosgwError
    from dataloop.lake.layout import InvalidId

    try:
        vehicles = list(args.vehicle or [])
        if args.vehicles_file:
            vehicles += read_vehicles(Path(args.vehicles_file))
        target = Target.from_env(args.lake, args.endpoint)
        report = bootstrap(
            target,
            sorted(set(vehicles)),
            policies_out=Path(args.policies_out) if args.policies_out else None,
            require_tls=args.require_tls,
            notify_queue=args.notify_queue,
            notify_endpoint=args.notify_endpoint,
        )
    except (
        BootstrapError,
        InvalidId,
        OSError,
        S3Error,
        MinioAdminException,
        HTTPError,
        RadosgwError,
        BotoCoreError,
        ClientError,
    ) as e:
        raise UserError(str(e)) from e
    if args.credentials_out:  # secrets go to the file only, merged with earlier runs'
        _save_credentials(Path(args.credentials_out), report.vehicles)
        for v in report.vehicles:
            v.pop("secret_key", None)
    if args.json:
        _print(report.__dict__)
        return
    out.print(
        f"bucket {report.bucket} ({'created' if report.bucket_created else 'exists'}): "
        f"versioning {report.versioning}, {report.lifecycle_rules} lifecycle rules, "
        f"policy {', '.join(report.bucket_policy_statements)}"
    )
    if report.identities not in ("minio", "radosgw"):
        err.print(f"vehicle identities {report.identities}")
    for v in report.vehicles:
        secret = f" secret {v['secret_key']}" if "secret_key" in v else ""
        out.print(f"vehicle {v['vehicle']}: {v['status']} ({v['access_key']}){secret}")
    for path in report.policies_written:
        out.print(f"wrote {path}")


def cmd_pools(args: argparse.Namespace) -> None:
    from dagster import DagsterInstance

    from dataloop.cli import out
    from dataloop.infra.pools import apply_pools

    with DagsterInstance.get() as instance:
        limits = apply_pools(instance)
    if args.json:
        _print(limits)
    else:
        for name, limit in limits.items():
            out.print(f"pool {name}: {limit}")


def celery_worker_command(name: str, concurrency: int, folder: Path) -> tuple[list[str], dict]:
    """A Celery worker of dagster-celery's app on ``DATALOOP_CELERY_*``'s broker, and its
    environment: the app reads its settings from a ``dagster_celery_config`` module, written
    to ``folder`` from the executor's own config (so the two cannot disagree)."""
    from dataloop.infra.executors import celery_config

    config = celery_config()
    settings = {
        "broker_url": config["broker"],
        "result_backend": config["backend"],
        **config["config_source"],
    }
    (folder / "dagster_celery_config.py").write_text(
        "".join(f"{k} = {v!r}\n" for k, v in settings.items())
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "celery", "--app", "dagster_celery.app", "worker",
        "--hostname", f"{name}@%h", f"--concurrency={concurrency}", "--loglevel=WARNING",
    ]  # fmt: skip
    return command, {**os.environ, "PYTHONPATH": path}


def cmd_celery_worker(args: argparse.Namespace) -> None:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:  # the worker records its steps' events there
        folder = Path(instance.root_directory) / "celery" / args.name
    folder.mkdir(parents=True, exist_ok=True)
    command, env = celery_worker_command(args.name, args.concurrency, folder)
    os.execve(command[0], command, env)  # the worker is this process: signals reach it


def add_infra_parser(sub: argparse._SubParsersAction) -> None:
    """``dataloop infra bootstrap``, ``pools`` and ``celery-worker``."""
    infra = sub.add_parser(
        "infra", help="deployment: bucket bootstrap, concurrency pools, Celery workers"
    )
    verbs = infra.add_subparsers(dest="infra_command", required=True)

    boot = verbs.add_parser(
        "bootstrap",
        help="create the lake bucket with versioning, lifecycle per zone, bucket policy and "
        "one upload identity per vehicle (MinIO, radosgw); idempotent",
    )
    boot.add_argument("--lake", help="s3://bucket/prefix (default: $DATALOOP_LAKE)")
    boot.add_argument("--endpoint", help="S3 endpoint URL (default: $DATALOOP_S3_ENDPOINT, AWS)")
    boot.add_argument("--vehicle", action="append", help="a vehicle id (repeatable)")
    boot.add_argument("--vehicles-file", help="vehicle ids, one per line (# comments)")
    boot.add_argument(
        "--policies-out", help="write each vehicle's policy JSON here (for IAM on AWS)"
    )
    boot.add_argument(
        "--credentials-out", help="write new vehicles' secrets to this file (mode 0600)"
    )
    boot.add_argument(
        "--require-tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deny plain-HTTP requests in the bucket policy (default: when the endpoint is https)",
    )
    boot.add_argument(
        "--notify-queue",
        help="queue ARN to announce committed manifests to (SQS; MinIO: arn:minio:sqs::ID:kafka)",
    )
    boot.add_argument(
        "--notify-endpoint",
        help="radosgw: push committed-manifest events to this http(s)://, amqp:// or kafka:// "
        "endpoint (through an SNS-compatible topic bootstrap creates); "
        "amqp://user:pw@host:port/vhost?queue=Q&exchange=E declares the RabbitMQ stream "
        "DATALOOP_UPLOAD_QUEUE reads",
    )
    boot.add_argument("--json", action="store_true", help="print the report as JSON")
    boot.set_defaults(func=cmd_bootstrap)

    pools = verbs.add_parser(
        "pools", help="store the per-stage concurrency pool limits in $DAGSTER_HOME's instance"
    )
    pools.add_argument("--json", action="store_true", help="print the limits as JSON")
    pools.set_defaults(func=cmd_pools)

    worker = verbs.add_parser(
        "celery-worker",
        help="run a dagster-celery worker for DATALOOP_EXECUTOR=celery, on the broker "
        "DATALOOP_CELERY_BROKER names, recording into $DAGSTER_HOME's instance",
    )
    worker.add_argument(
        "--name", default=f"dataloop-{os.getpid()}", help="the worker's name (before @host)"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="steps this worker runs at once (default 1: each step uses DATALOOP_WORKERS "
        "processes of its own)",
    )
    worker.set_defaults(func=cmd_celery_worker)
