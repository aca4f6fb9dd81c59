"""`dataloop datasets`, `dataloop lineage …` and `dataloop forget`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()
JSON_HELP = "print JSON instead of a table"


def _emit(args: argparse.Namespace, value: Any, render) -> None:
    if args.json:
        sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")
    else:
        render(value)


def cmd_datasets(args: argparse.Namespace) -> None:
    from dataloop.curation import datasets as D
    from dataloop.lake import open_store

    store = open_store(create=False)
    rows = [
        {
            "dataset": f"{r['name']}:{r['seq']}",
            "version": r["version"],
            "clips": r["clips"],
            "created_at": r["created_at"],
            "splits": r.get("report", {}).get("splits"),
            "superseded_by": (r["superseded"] or {}).get("superseded_by"),
        }
        for name in D.dataset_names(store)
        for r in D.versions(store, name)
    ]

    def render(rows: list[dict]) -> None:
        table = Table(title="dataset versions")
        for c in ("dataset", "version", "clips", "splits", "created", "superseded by"):
            table.add_column(c)
        for r in rows:
            splits = " ".join(f"{k} {v}" for k, v in (r["splits"] or {}).items())
            table.add_row(
                r["dataset"],
                r["version"][:12],
                str(r["clips"]),
                splits,
                r["created_at"][:19],
                (r["superseded_by"] or "")[:12],
            )
        out.print(table)

    _emit(args, rows, render)


def cmd_lineage(args: argparse.Namespace) -> None:
    from dataloop.lake import open_store
    from dataloop.lineage.graph import backward, forward

    store = open_store(create=False)
    if args.kind in ("dataset", "model", "release"):
        result = backward(store, args.kind, args.id)

        def render(r: dict) -> None:
            chain = " <- ".join(f"{n['kind']} {n['version'][:12]}" for n in r["chain"])
            sets = ", ".join(
                f"{d['name']}:{d['seq']}" + (" (superseded)" if d["superseded"] else "")
                for d in r["datasets"]
            )
            out.print(f"{chain + ' <- ' if chain else ''}{sets}")
            table = Table(title=f"{len(r['drives'])} drives")
            for c in ("vehicle", "drive", "drive version", "clips"):
                table.add_column(c)
            for d in r["drives"]:
                table.add_row(d["vehicle"], d["drive"], d["drive_version"], str(d["clips"]))
            out.print(table)
    else:
        vehicle, drive = (args.id, None) if args.kind == "vehicle" else (args.vehicle, args.id)
        if args.kind == "drive" and vehicle is None:
            from dataloop.lineage.forget import resolve_subject

            vehicle = resolve_subject(store, None, args.id).vehicle
        result = forward(store, vehicle, drive)

        def render(r: dict) -> None:
            for kind in ("datasets", "models", "releases"):
                names = [
                    f"{d['name']}:{d['seq']} {d['version'][:12]}"
                    + (" (superseded)" if d.get("superseded") else "")
                    if kind == "datasets"
                    else d["version"]
                    for d in r[kind]
                ]
                out.print(f"[bold]{kind}[/]: {', '.join(names) or '-'}")

    _emit(args, result, render)


class Refused(LookupError):
    """The user did not confirm (or could not be asked): nothing was changed."""


def _forget(store, args: argparse.Namespace, what: str) -> dict:
    from dataloop.lineage.forget import forget

    with out.status(f"{what}…") as status:
        return forget(
            store,
            vehicle=args.vehicle,
            drive=args.drive,
            on_progress=lambda step: status.update(f"{what}: {step}"),
        )


def _can_ask(subject: str) -> None:
    if not sys.stdin.isatty():
        raise Refused(
            f"refusing to forget {subject} without confirmation: stdin is not a terminal "
            "(pass --yes to confirm, or --dry-run to see what would be deleted)"
        )


def _confirm(plan: dict, subject: str) -> None:
    """Ask before deleting; without a terminal to ask on, refuse (``--yes`` skips this)."""
    _can_ask(subject)
    superseded = sum(len(d["superseded"]) for d in plan["datasets"])
    prompt = (
        f"forget {subject}: delete {plan['deleted_objects']} objects, rewrite "
        f"{len(plan['rewritten_indexes'])} indexes, supersede {superseded} dataset "
        "version(s)? This cannot be undone. [y/N] "
    )
    Console(stderr=True).print(prompt, end="", markup=False, highlight=False)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Refused(f"not confirmed: {subject} was not forgotten")


def cmd_forget(args: argparse.Namespace) -> None:
    from dataloop.lake import open_store
    from dataloop.lake.dryrun import DryRunStore

    if not (args.vehicle or args.drive):
        raise LookupError("name the --vehicle or the --drive to forget")
    subject = " ".join(
        f"{k} {v}" for k, v in (("vehicle", args.vehicle), ("drive", args.drive)) if v
    )
    if not (args.dry_run or args.yes):
        _can_ask(subject)  # before any work
    store = open_store(create=False)
    if args.dry_run or not args.yes:
        # The real deletion run against an in-memory copy-on-write view of the lake: what it
        # would delete, rewrite and supersede, with the lake left byte for byte as it is.
        dry = DryRunStore(store)
        plan = _forget(dry, args, "planning")
        plan = {
            **{k: v for k, v in plan.items() if k != "audit_key"},
            "dry_run": True,
            "would_delete": sorted(dry.deleted),
            "would_write": sorted(dry.written),
        }
        if args.dry_run:
            _emit(args, plan, _render_plan)
            return
        _confirm(plan, subject)
    _emit(args, _forget(store, args, "forgetting"), _render_audit)


def _render_plan(a: dict) -> None:
    out.print(
        f"dry run: would delete {len(a['would_delete'])} objects and rewrite "
        f"{len(a['rewritten_indexes'])} indexes; nothing was changed"
    )
    for key in a["would_delete"]:
        out.print(f"  delete {key}", highlight=False)
    for key in a["rewritten_indexes"]:
        out.print(f"  rewrite {key}", highlight=False)
    for d in a["datasets"]:
        out.print(f"{d['dataset']}: would supersede {', '.join(d['superseded'])}")
    models = ", ".join(m["version"] for m in a["affected_models"]) or "none"
    releases = ", ".join(r["version"] for r in a["affected_releases"]) or "none"
    out.print(f"affected models: {models}; releases: {releases}")


def _render_audit(a: dict) -> None:
    out.print(
        f"deleted {a['deleted_objects']} objects; rewrote {len(a['rewritten_indexes'])} indexes"
    )
    for d in a["datasets"]:
        out.print(f"{d['dataset']}: superseded {', '.join(d['superseded'])} -> {d['successor']}")
    models = ", ".join(m["version"] for m in a["affected_models"]) or "none"
    releases = ", ".join(r["version"] for r in a["affected_releases"]) or "none"
    out.print(f"affected models: {models}; releases: {releases}")
    out.print(f"audit record: {a['audit_key']}")


def add_curation_parsers(sub) -> None:
    ds = sub.add_parser("datasets", help="dataset versions: clips, splits, superseded")
    ds.add_argument("--json", action="store_true", help=JSON_HELP)
    ds.set_defaults(func=cmd_datasets)

    lin = sub.add_parser("lineage", help="back from a dataset/model/release, forward from data")
    lin.add_argument(
        "kind",
        choices=["dataset", "model", "release", "drive", "vehicle"],
        help="back from a dataset, model or release; forward from a drive or vehicle",
    )
    lin.add_argument("id", help="version (hash prefix or name:seq), drive id or vehicle id")
    lin.add_argument("--vehicle", help="the drive's vehicle (default: looked up)")
    lin.add_argument("--json", action="store_true", help=JSON_HELP)
    lin.set_defaults(func=cmd_lineage)

    fg = sub.add_parser("forget", help="deletion request: remove a vehicle's or drive's data")
    fg.add_argument("--vehicle", help="the vehicle whose data goes (all its drives)")
    fg.add_argument("--drive", help="the drive whose data goes (with --vehicle: its vehicle)")
    fg.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be deleted, rewritten and superseded; change nothing",
    )
    fg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    fg.add_argument("--json", action="store_true", help=JSON_HELP)
    fg.set_defaults(func=cmd_forget)
