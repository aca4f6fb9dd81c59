"""``dataloop search``: find clips by text or by a frame that looks alike; write a contact
sheet; export hits as MCAP cuts. Heavy imports happen only when the command runs."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any


def add_search_parser(sub: Any) -> None:
    """Add the ``search`` subcommand to the ``dataloop`` parser's subparsers."""
    s = sub.add_parser("search", help="find clips by a text or by a frame that looks alike")
    s.add_argument("text", nargs="?", help='e.g. "flooded road at night with a pedestrian"')
    s.add_argument("--like", metavar="IMAGE", help="rank frames that look like this image")
    s.add_argument("--k", type=int, default=10, help="hits to return")
    s.add_argument("--condition", help="day, dusk, night, rain, fog, snow or flooded")
    s.add_argument("--road", help="highway, merge, roundabout or intersection")
    s.add_argument("--scenario", help="cut_in, hard_brake, near_miss, disengagement, ...")
    s.add_argument("--vehicle", help="only this vehicle's drives")
    s.add_argument("--camera", help="with --like: only this camera's frames (e.g. front)")
    s.add_argument("--day", action="append", help="only this arrival day (repeatable)")
    s.add_argument("--sheet", help="contact sheet PNG (default: search/ beside the lake)")
    s.add_argument(
        "--export-mcap",
        type=int,
        action="append",
        metavar="N",
        help="write hit N (1 = best) as an MCAP cut of its drive; repeatable",
    )
    s.add_argument("--out", help="folder for MCAP cuts (default: exports/ beside the lake)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_search)


def _beside_the_lake(folder: str) -> Path:
    from dataloop.lake.store import DEFAULT_LAKE, lake_url

    url = lake_url()
    return Path(url if not url.startswith("s3://") else DEFAULT_LAKE).parent / folder


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "search"


def cmd_search(args: argparse.Namespace) -> None:
    from dataloop.cli import UserError, out
    from dataloop.lake import open_store
    from dataloop.search.export import cut_name, export_cut
    from dataloop.search.frames import decode_rgb
    from dataloop.search.index import load_index
    from dataloop.search.search import Filters, image_search, text_search
    from dataloop.search.sheet import contact_sheet

    if bool(args.text) == bool(args.like):
        raise UserError("give either a TEXT to search for or --like IMAGE")
    if args.k < 1:
        raise UserError("--k must be >= 1")
    if args.camera and not args.like:
        raise UserError("--camera keeps an image search (--like) to one camera; a clip is all")
    store = open_store(create=False)
    index = load_index(store, args.day)
    if not index.days:
        raise LookupError("no search index in the lake yet (the clip_embeddings asset builds it)")
    filters = Filters(args.condition, args.road, args.scenario, args.vehicle, args.camera)
    if args.like:
        path = Path(args.like)
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        try:
            image = decode_rgb(path.read_bytes())
        except OSError as e:
            raise UserError(f"not an image: {path} ({e})") from e
        hits = image_search(store, image, args.k, filters, index=index)
        title, slug = f"like {path.name}", f"like-{_slug(path.stem)}"
    else:
        hits = text_search(store, args.text, args.k, filters, index=index)
        title, slug = args.text, _slug(args.text)
    sheet = Path(args.sheet) if args.sheet else _beside_the_lake("search") / f"{slug}.png"
    contact_sheet(store, hits, sheet, title=f"{title}  ({len(hits)} hits)")
    exports = []
    for n in args.export_mcap or []:
        if not 1 <= n <= len(hits):
            raise UserError(f"--export-mcap {n}: there are {len(hits)} hits")
        h = hits[n - 1]
        folder = Path(args.out) if args.out else _beside_the_lake("exports")
        target = folder / cut_name(h.vehicle_id, h.drive_id, h.start_ns, h.end_ns)
        exports.append(export_cut(store, h.vehicle_id, h.drive_id, h.start_ns, h.end_ns, target))
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.text or str(args.like),
                    "hits": [h.to_json() for h in hits],
                    "sheet": str(sheet),
                    "exports": exports,
                    "days": index.days,
                    "other_encoder_days": index.other_encoder_days,
                },
                indent=1,
            )
        )
        return
    out.print(_table(hits))
    out.print(f"contact sheet: {sheet}")
    for e in exports:
        out.print(f"MCAP cut: {e['path']} ({sum(e['messages'].values())} messages)")
    if index.other_encoder_days:
        out.print(f"not searched (indexed with another image encoder): {index.other_encoder_days}")


def _table(hits: list) -> Any:
    from datetime import UTC, datetime

    from rich.table import Table

    def hhmmss(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")

    table = Table("#", "score", "what")
    table.add_column("vehicle/drive", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    table.add_column("scene", ratio=1)
    for h in hits:
        table.add_row(
            str(h.rank),
            f"{h.score:.3f}",
            h.scenario or h.kind,
            f"{h.vehicle_id}/{h.drive_id}",
            f"{hhmmss(h.start_ns)} +{(h.end_ns - h.start_ns) / 1e9:.0f}s",
            h.description or f"{h.conditions or ''} {h.road or ''}",
        )
    return table
