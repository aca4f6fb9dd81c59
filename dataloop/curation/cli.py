"""`dataloop datasets`, `dataloop lineage …` and `dataloop forget`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()


def _emit(args: argparse.Namespace, value: Any, render) -> None:
    if args.json:
        sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")
    else:
        render(value)


def cmd_datasets(args: argparse.Namespace) -> None:
    from dataloop.curation import datasets as D
    from dataloop.lake import open_store

    store = open_store()
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

    store = open_store()
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


def cmd_forget(args: argparse.Namespace) -> None:
    from dataloop.lake import open_store
    from dataloop.lineage.forget import forget

    if not (args.vehicle or args.drive):
        raise LookupError("name the --vehicle or the --drive to forget")
    with out.status("forgetting…") as status:
        audit = forget(
            open_store(),
            vehicle=args.vehicle,
            drive=args.drive,
            on_progress=lambda step: status.update(f"forgetting: {step}"),
        )

    def render(a: dict) -> None:
        out.print(
            f"deleted {a['deleted_objects']} objects; rewrote {len(a['rewritten_indexes'])} indexes"
        )
        for d in a["datasets"]:
            out.print(
                f"{d['dataset']}: superseded {', '.join(d['superseded'])} -> {d['successor']}"
            )
        models = ", ".join(m["version"] for m in a["affected_models"]) or "none"
        releases = ", ".join(r["version"] for r in a["affected_releases"]) or "none"
        out.print(f"affected models: {models}; releases: {releases}")
        out.print(f"audit record: {a['audit_key']}")

    _emit(args, audit, render)


def add_curation_parsers(sub) -> None:
    ds = sub.add_parser("datasets", help="dataset versions: clips, splits, superseded")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_datasets)

    lin = sub.add_parser("lineage", help="back from a dataset/model/release, forward from data")
    lin.add_argument("kind", choices=["dataset", "model", "release", "drive", "vehicle"])
    lin.add_argument("id", help="version (hash prefix or name:seq), drive id or vehicle id")
    lin.add_argument("--vehicle", help="the drive's vehicle (default: looked up)")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(func=cmd_lineage)

    fg = sub.add_parser("forget", help="deletion request: remove a vehicle's or drive's data")
    fg.add_argument("--vehicle")
    fg.add_argument("--drive")
    fg.add_argument("--json", action="store_true")
    fg.set_defaults(func=cmd_forget)
