"""The ``dataloop`` command. Every verb that prints data has ``--json``; errors go to stderr
with a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dataloop.curation.cli import add_curation_parsers
from dataloop.defs.intervals import INTERVAL_ENV
from dataloop.infra.cli import add_infra_parser
from dataloop.ingest.cli import add_adapters_parser
from dataloop.release.cli import add_release_parser  # OTA release (#8)
from dataloop.search.cli import add_search_parser  # search (#5)

out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


JSON_HELP = "print JSON instead of a table"
MCAP_MAGIC = b"\x89MCAP0\r\n"
"""The first 8 bytes of every MCAP file (the drive-log format)."""


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")


# -- fleet upload --------------------------------------------------------------------------
def cmd_fleet_upload(args: argparse.Namespace) -> None:
    from dataloop.fleet.uploader import upload_drive
    from dataloop.lake import open_store

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    with path.open("rb") as f:
        head = f.read(len(MCAP_MAGIC))
    if head != MCAP_MAGIC:
        raise UserError(
            f"{path} is not an MCAP file (it starts with {head!r}, an MCAP file with "
            f"{MCAP_MAGIC!r}): a drive log is one MCAP file per drive segment"
        )
    store = open_store()
    with Progress(
        TextColumn("uploading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=args.json,
    ) as bar:
        task = bar.add_task(path.name, total=path.stat().st_size)
        result = upload_drive(
            store,
            path,
            vehicle=args.vehicle,
            drive=args.drive,
            trigger=args.trigger,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if args.json:
        _print_json(result.__dict__)
    else:
        out.print(f"{result.status}: {result.manifest_key} ({result.size / 1e6:.1f} MB)")


def _beside_the_lake() -> Path:
    """Where simulated vehicles keep their logs: fleet/ next to a local lake folder."""
    from dataloop.lake.store import DEFAULT_LAKE, lake_url

    url = lake_url()
    return Path(url if not url.startswith("s3://") else DEFAULT_LAKE).parent / "fleet"


# -- fleet simulate -------------------------------------------------------------------------
def cmd_fleet_simulate(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime, timedelta

    from dataloop.fleet.simulator.config import SimConfig
    from dataloop.fleet.simulator.fleet import simulate_fleet
    from dataloop.lake.store import lake_url

    if args.vehicles < 1 or args.minutes <= 0:
        raise UserError("--vehicles must be >= 1 and --minutes > 0")
    if args.start:
        start = datetime.fromisoformat(args.start)
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    else:  # the same seed within the same hour gives the same drives
        start = (datetime.now(UTC) - timedelta(minutes=args.minutes)).replace(
            minute=0, second=0, microsecond=0
        )
    out_dir = Path(args.out) if args.out else _beside_the_lake()
    total = args.vehicles * args.minutes * 60
    with Progress(
        TextColumn("simulating {task.fields[what]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err,
        disable=args.json,
    ) as bar:
        task = bar.add_task("", total=total, what=f"{args.vehicles} vehicles x {args.minutes} min")
        reports = simulate_fleet(
            vehicles=args.vehicles,
            minutes=args.minutes,
            seed=args.seed,
            out=out_dir,
            start=start,
            config=SimConfig(model_version=args.model, log_format=args.log_format),
            lake=lake_url() if args.upload else None,
            workers=args.workers,
            on_progress=lambda s: bar.advance(task, s),
        )
    if args.json:
        _print_json(
            [{**r.telemetry(), "drive_files": [d["path"] for d in r.drives]} for r in reports]
        )
        return
    table = Table(title=f"fleet (seed {args.seed}, logs in {out_dir})")
    for col in ("vehicle", "model", "drives", "km", "disengagements", "faults", "uploaded"):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r.vehicle,
            r.model_version,
            str(len(r.drives)),
            f"{r.km:.1f}",
            str(r.disengagements),
            str(r.faults),
            str(r.uploaded),
        )
    out.print(table)


DAEMON_INTERVAL_S = "5"
"""Sensor interval of the daemon that `demo` and `tick` start, unless DATALOOP_SENSOR_INTERVAL_S
says otherwise: each stage waits seconds for the next, not minutes."""


# -- tick ----------------------------------------------------------------------------------
def cmd_tick(args: argparse.Namespace) -> None:
    from dataloop import daemon as D

    os.environ.setdefault(INTERVAL_ENV, DAEMON_INTERVAL_S)
    try:
        with (
            err.status("dagster-daemon: sensors and the runs they request…", spinner="dots"),
            D.serve(reuse=False) as daemon,
        ):
            rest = D.wait_quiet(
                daemon, daemon.since, sensors=D.running_sensors(), timeout_s=args.timeout
            )
    except D.DaemonBusy as e:
        raise UserError(str(e)) from None
    if args.json:
        _print_json(rest.__dict__)
    else:
        for run in rest.runs:
            out.print(f"{run['status']:<8} {run['what']} {run['partition'] or ''}  {run['run_id']}")
        out.print(f"{len(rest.runs)} run(s)")
    for e in rest.errors:
        err.print(e)
    failed = [r for r in rest.runs if r["status"] != "SUCCESS" and not _retried(r, rest.runs)]
    if rest.errors or failed:
        raise UserError(f"{len(failed)} run(s) failed, {len(rest.errors)} sensor error(s)")


def _retried(run: dict[str, Any], runs: list[dict[str, Any]]) -> bool:
    return any(r.get("parent_run_id") == run["run_id"] for r in runs)


# -- drives --------------------------------------------------------------------------------
def drives_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="drives")
    for col in ("vehicle", "drive", "stage", "status", "minutes", "MB", "reasons"):
        table.add_column(col, overflow="fold")
    colors = {
        "ingested": "green",
        "pass": "green",
        "recovered": "yellow",
        "warn": "yellow",
        "quarantined": "red",
        "quarantine": "red",
    }
    for r in rows:
        table.add_row(
            str(r["vehicle"]),
            str(r["drive"]),
            r["stage"],
            f"[{colors.get(r['status'], 'white')}]{r['status']}[/]",
            f"{(r['duration_s'] or 0) / 60:.1f}",
            f"{(r['bytes'] or 0) / 1e6:.1f}",
            "; ".join(f"{x['code']}: {x['detail']}" for x in r["reasons"]),
        )
    return table


def cmd_drives(args: argparse.Namespace) -> None:
    from dataloop.ingest.catalog import drives_overview
    from dataloop.lake import open_store

    store = open_store(create=False)
    if args.migrate:
        from dataloop.lake import ledger

        folded = ledger.migrate(store)
        err.print(f"folded {folded} drive(s) of the per-stage records into the ledger")
    rows = drives_overview(store)
    if args.json:
        _print_json(rows)
    else:
        out.print(drives_table(rows))


# -- demo ----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> None:
    from dataloop import daemon as D
    from dataloop.demo import loop as L
    from dataloop.demo.profile import demo_fleet, demo_rules
    from dataloop.lake import open_store

    if args.iterations < 1 or args.vehicles < 1 or args.minutes <= 0:
        raise UserError("--iterations and --vehicles must be >= 1 and --minutes > 0")
    logging.getLogger("dagster").setLevel(logging.ERROR)  # run logs stay in the Dagster UI
    home = D.dagster_home()
    state = home.parent
    rules = demo_rules(state)
    L.ensure_keys(state)
    os.environ.setdefault(INTERVAL_ENV, DAEMON_INTERVAL_S)
    store = open_store()
    cfg = L.LoopConfig(
        vehicles=args.vehicles,
        minutes=args.minutes,
        rollout_minutes=args.minutes / 2,
        seed=args.seed,
        fleet=replace(demo_fleet(), log_format=args.log_format),
        logs=state / "fleet",
    )
    log = state / "demo.log"  # what the fleet and Dagster print (also in the UI), not the terminal
    with D.serve(ui_port=args.ui) as daemon:
        iterations = _demo_loop(args, cfg, store, daemon, log, rules)
        _demo_report(args, iterations, store, state, log)
        if daemon.ui:
            err.print(f"the loop is done; the UI stays up at {daemon.ui} until Ctrl-C")
            # Ctrl-C ends it even where SIGINT came in ignored (a child of pytest-xdist)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    daemon.check_alive()
                    time.sleep(1)
    errors = [r for it in iterations for r in it.runs if r["status"] not in ("SUCCESS", "FAILURE")]
    if errors:
        raise UserError(f"{len(errors)} run(s) did not finish; see `dagster dev` for their logs")


def _demo_loop(
    args: argparse.Namespace, cfg: Any, store: Any, daemon: Any, log: Path, rules: Path
) -> list:
    """The iterations, with a progress bar; Dagster's and the fleet's output go to ``log``."""
    from dataloop.daemon import running_sensors
    from dataloop.demo import loop as L
    from dataloop.demo.report import publish, rows

    iterations: list = []
    home = Path(os.environ["DAGSTER_HOME"])
    with (
        log.open("a") as log_file,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} iterations"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
        ) as bar,
        contextlib.redirect_stderr(log_file),
    ):
        say = bar.console.print
        say(f"lake: {store.url}\nDagster instance: {home}\nrules: {rules}", highlight=False)
        if not daemon.started_here:
            say(
                "a daemon already serves this instance (dagster dev?): the demo uses it. Start "
                f"it with this demo's DATALOOP_LAKE, DATALOOP_RULES={rules}, "
                f"DATALOOP_TUF_KEYS_DIR and {INTERVAL_ENV}={DAEMON_INTERVAL_S}.",
                highlight=False,
            )
        if daemon.ui:
            say(f"Dagster UI: {daemon.ui} (the loop live: runs, sensors, automation)")
        sensors = running_sensors()
        task = bar.add_task("starting", total=args.iterations)

        def step(message: str) -> None:
            bar.update(task, description=f"[{len(iterations)}] {message}")

        for i in range(args.iterations):
            it = L.run_iteration(store, cfg, i, daemon, sensors, say=step)
            iterations.append(it)
            row = rows([it])[0]
            say(
                f"iteration {i}: {row['km']} km, {len(it.runs)} runs, {row['dataset (clips)']}, "
                f"model {row['new model']} (score {row['score']}, gate {row['gate']}), "
                f"releases {row['releases']}, production {row['production']}",
                highlight=False,
            )
            bar.advance(task)
            publish(iterations, home.parent / "loop.png", daemon.instance)
    return iterations


def _demo_report(
    args: argparse.Namespace, iterations: list, store: Any, state: Path, log: Path
) -> None:
    from dataloop.demo.report import rows
    from dataloop.ingest.catalog import drives_overview
    from dataloop.release.rollout import status

    if args.json:
        _print_json([it.to_dict() for it in iterations])
        return
    table = Table(title="the loop, iteration by iteration", box=box.SIMPLE_HEAD)
    summary = rows(iterations)
    for col in summary[0]:
        table.add_column(col, overflow="fold", min_width=len(col) if len(col) < 6 else 4)
    for r in summary:
        table.add_row(*(str(v) for v in r.values()))
    out.print(table)
    out.print(f"plot: {state / 'loop.png'} (also on the loop_report asset in the Dagster UI)")
    out.print(f"run logs: {log}")
    drives = drives_overview(store)
    by_status = Counter(d["status"] for d in drives)
    out.print(f"drives: {len(drives)} ({', '.join(f'{k} {v}' for k, v in by_status.items())})")
    prod = status(store)["production"]
    out.print(f"production: model {prod['model_version']} (release {prod.get('release')})")
    out.print(_labels_table(store))


# -- labels review ---------------------------------------------------------------------------
def cmd_review_export(args: argparse.Namespace) -> None:
    from dataloop.labeling.review import export_coco
    from dataloop.lake import ledger, open_store

    store = open_store(create=False)
    drives = sorted((s.vehicle, s.drive) for s in ledger.all_drives(store) if s.labels)
    coco, images = export_coco(store, drives, below=args.below)
    out_dir = Path(args.out)
    for name, jpeg in images.items():
        (out_dir / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / "images" / name).write_bytes(jpeg)
    (out_dir / "annotations.json").write_text(json.dumps(coco, indent=1))
    summary = {
        "images": len(coco["images"]),
        "annotations": len(coco["annotations"]),
        "out": str(out_dir),
    }
    if args.json:
        _print_json(summary)
    else:
        out.print(f"{summary['annotations']} boxes on {summary['images']} frames -> {out_dir}")


def cmd_review_import(args: argparse.Namespace) -> None:
    from dataloop.labeling.review import import_reviewed
    from dataloop.lake import open_store

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    changes = import_reviewed(open_store(create=False), json.loads(path.read_text()))
    if args.json:
        _print_json(changes)
    else:
        for c in changes:
            what = "rejected" if c["rejected"] else f"{c['class_from']} -> {c['class_to']}"
            out.print(f"{c['vehicle']}/{c['drive']} track {c['track_id']}: {what}")


def _fmt(metric: str, value: float) -> str:
    if metric.endswith("_rate"):
        return f"{value:.1%}"
    return f"{value:.0f}" if metric.startswith("id_") else f"{value:.2f}"


def _labels_table(store) -> Table:
    """Offboard labels against onboard perception, scored on the simulator's ground truth."""
    from dataloop.labeling.hour import METRICS, metrics_by_condition
    from dataloop.lake import ledger

    records = [s.labels for s in ledger.all_drives(store) if s.labels]
    table = Table(title="offboard labels vs onboard perception (simulator ground truth)")
    table.caption = "onboard→offboard, lower is better"
    table.add_column("conditions")
    table.add_column("drives")
    for header in ("RMSE m", "ID sw./100", "false pos.", "missed"):
        table.add_column(header, justify="right")
    for row in metrics_by_condition([r for r in records if r]):
        cells = [
            f"{_fmt(m, row[f'onboard_{m}'])}→{_fmt(m, row[f'offboard_{m}'])}"
            if row[f"onboard_{m}"] is not None and row[f"offboard_{m}"] is not None
            else "-"
            for m in METRICS
        ]
        table.add_row(row["conditions"], str(row["drives"]), *cells)
    return table


# -- parser --------------------------------------------------------------------------------
LOG_FORMAT = {
    "choices": ("protobuf", "ros2"),
    "default": "protobuf",
    "help": "how the fleet records: the dataloop protobuf contract (default) or ROS 2 MCAP "
    "(standard types on Autoware-style topics)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dataloop", description=__doc__)
    p.add_argument("--version", action="version", version=f"dataloop {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the whole loop, K iterations, on the local default")
    demo.add_argument("--iterations", type=int, default=3, help="loop iterations (default 3)")
    demo.add_argument("--vehicles", type=int, default=4, help="simulated vehicles (default 4)")
    demo.add_argument("--minutes", type=float, default=2.0, help="minutes per vehicle")
    demo.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    demo.add_argument("--log-format", **LOG_FORMAT)
    demo.add_argument(
        "--ui",
        nargs="?",
        const=3000,
        type=int,
        metavar="PORT",
        help="also start the Dagster UI on PORT (default 3000) to watch the loop live",
    )
    demo.add_argument("--json", action="store_true", help=JSON_HELP)
    demo.set_defaults(func=cmd_demo)

    fleet = sub.add_parser("fleet", help="the vehicle side").add_subparsers(
        dest="fleet_command", required=True, metavar="COMMAND"
    )
    sim = fleet.add_parser("simulate", help="drive a simulated fleet and record its logs")
    sim.add_argument("--vehicles", type=int, default=2, help="vehicles (default 2)")
    sim.add_argument("--minutes", type=float, default=2.0, help="minutes per vehicle")
    sim.add_argument("--seed", type=int, default=0, help="same seed, same drives (default 0)")
    sim.add_argument("--out", help="where the logs go (default: fleet/ beside a local lake)")
    sim.add_argument("--upload", action="store_true", help="upload to the lake ($DATALOOP_LAKE)")
    sim.add_argument("--start", help="UTC start of the drives (default: this hour)")
    sim.add_argument("--model", default="baseline", help="model version the fleet runs")
    sim.add_argument("--log-format", **LOG_FORMAT)
    sim.add_argument("--workers", type=int, help="processes (default: one per vehicle, <= cores)")
    sim.add_argument("--json", action="store_true", help=JSON_HELP)
    sim.set_defaults(func=cmd_fleet_simulate)

    up = fleet.add_parser("upload", help="upload one drive log and commit it")
    up.add_argument("file", help="the drive log (an MCAP file)")
    up.add_argument("--vehicle", required=True, help="the vehicle that recorded it")
    up.add_argument("--drive", help="drive id (default: from the log, else the file name)")
    up.add_argument("--trigger", default="manual", help="why this log is uploaded")
    up.add_argument("--json", action="store_true", help=JSON_HELP)
    up.set_defaults(func=cmd_fleet_upload)

    t = sub.add_parser(
        "tick", help="run dagster-daemon until the sensors and their runs come to rest"
    )
    t.add_argument("--timeout", type=float, default=1800, help="seconds at most (1800)")
    t.add_argument("--json", action="store_true", help=JSON_HELP)
    t.set_defaults(func=cmd_tick)

    labels = sub.add_parser("labels", help="offboard labels").add_subparsers(
        dest="labels_command", required=True, metavar="COMMAND"
    )
    ex = labels.add_parser("review-export", help="low-confidence tracks as COCO, for review")
    ex.add_argument("--below", type=float, default=0.6, help="confidence threshold")
    ex.add_argument("--out", default=".dataloop/review", help="folder for annotations + images")
    ex.add_argument("--json", action="store_true", help=JSON_HELP)
    ex.set_defaults(func=cmd_review_export)
    im = labels.add_parser("review-import", help="apply a reviewed COCO file")
    im.add_argument("file", help="the reviewed COCO annotations (JSON)")
    im.add_argument("--json", action="store_true", help=JSON_HELP)
    im.set_defaults(func=cmd_review_import)

    d = sub.add_parser("drives", help="every drive: stage reached, verdict, reasons")
    d.add_argument("--json", action="store_true", help=JSON_HELP)
    d.add_argument(
        "--migrate",
        action="store_true",
        help="first fold a lake written before the drive ledger (per-stage records) into it",
    )
    d.set_defaults(func=cmd_drives)
    add_adapters_parser(sub)
    add_infra_parser(sub)
    add_curation_parsers(sub)
    add_search_parser(sub)
    add_release_parser(sub)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dataloop")
    except PackageNotFoundError:
        from dataloop import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dataloop.fleet.uploader import DriveConflict
    from dataloop.lake.layout import InvalidId
    from dataloop.lake.store import LakeURLError
    from dataloop.rules import RulesError

    try:
        args.func(args)
    except (UserError, DriveConflict, InvalidId, LookupError, LakeURLError, RulesError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
