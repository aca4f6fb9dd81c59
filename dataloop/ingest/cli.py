"""`dataloop adapters ...`: how a drive log maps to the canonical tables, tried on a file.
Registered by ``dataloop.cli.build_parser`` through ``add_adapters_parser``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_check(args: argparse.Namespace) -> None:
    from rich.table import Table

    from dataloop.cli import UserError, err, out
    from dataloop.ingest.check import check_log

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    report = check_log(path)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        if report["ok"]:
            rows = Table("table", "rows", title=f"{path.name}: tables")
            for name, n in report["tables"].items():
                rows.add_row(name, str(n))
            out.print(rows)
            unmapped = Table("topic", "schema", "encoding", "messages", title="unmapped topics")
            for c in report["unmapped_topics"]:
                encoding = f"{c['schema_encoding'] or '-'}/{c['message_encoding']}"
                unmapped.add_row(c["topic"], c["schema"], encoding, str(c["messages"]))
            out.print(unmapped if report["unmapped_topics"] else "unmapped topics: none")
            if report["truncated"]:
                out.print(f"[yellow]truncated:[/] {report['truncated']}")
    if not report["ok"]:
        e = report["error"]
        err.print(f"[red]would be quarantined:[/] {e['code']}: {e['detail']}", highlight=False)
        sys.exit(1)


def cmd_suggest(args: argparse.Namespace) -> None:
    from dataloop.cli import UserError, err
    from dataloop.ingest.suggest import suggest

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    draft = suggest(path)
    if not draft:
        err.print(f"every channel of {path.name} is mapped: nothing to suggest")
        return
    sys.stdout.write(draft)


def add_adapters_parser(sub: argparse._SubParsersAction) -> None:
    adapters = sub.add_parser("adapters", help="how drive logs map to the tables").add_subparsers(
        dest="adapters_command", required=True, metavar="COMMAND"
    )
    check = adapters.add_parser(
        "check", help="dry-run ingest's decoding of one MCAP file (the lake is not touched)"
    )
    check.add_argument("file", help="the drive log (an MCAP file)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(func=cmd_check)
    draft = adapters.add_parser(
        "suggest", help="print a draft adapter (YAML) for the channels of a log no adapter maps"
    )
    draft.add_argument("file", help="the drive log (an MCAP file)")
    draft.set_defaults(func=cmd_suggest)
