"""`dataloop release ...`: key generation and the rollout's status. Registered by
``dataloop.cli.build_parser`` through ``add_release_parser``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")


def cmd_keys_init(args: argparse.Namespace) -> None:
    from dataloop.cli import out
    from dataloop.release.repository import KEY_FILES, init_keys

    written = init_keys(args.dir)
    if args.json:
        _print({"dir": args.dir, "written": written})
        return
    out.print(f"{len(written)} new key(s) in {args.dir} (mode 0600); roles: {list(KEY_FILES)}")
    out.print("Keep root-*.pem and targets.pem offline; only timestamp.pem must stay online.")


def cmd_status(args: argparse.Namespace) -> None:
    from rich.table import Table

    from dataloop.cli import out
    from dataloop.lake import open_store
    from dataloop.release.rollout import status

    st = status(open_store(create=False))
    if args.json:
        _print(st)
        return
    prod = st["production"]
    out.print(f"production: model {prod['model_version']} (release {prod.get('release')})")
    r = st["rollout"]
    if r is None:
        out.print("no rollout yet")
    else:
        out.print(
            f"rollout: release {r['release']} model {r['model_version']} — {r['status']} "
            f"at {r['stage_percent']} % (previous: {r['previous_model']})"
        )
        last = r.get("last_check")
        decisions = [*r["decisions"], *([last] if last else [])]
        table = Table("release", "stage %", "decision", "cohort km", "dis./1000 km", "limit")
        for col in ("prev. dis./1000 km", "err./1000 km", "reasons"):
            table.add_column(col)
        for d in decisions:
            c = d["cohort"]
            table.add_row(
                str(d["release"]),
                str(d["stage_percent"]),
                d["decision"],
                str(c["km"]),
                str(c["disengagements_per_1000km"]),
                str(d["disengagement_limit_per_1000km"]),
                str(d["previous_release"]["disengagements_per_1000km"]),
                str(c["errors_per_1000km"]),
                "; ".join(d["reasons"]),
            )
        out.print(table)
    history = Table("release", "kind", "model", "dataset", "created", "rollout", title="history")
    for h in st["history"]:
        rollout = h.get("rollout")
        history.add_row(
            str(h["release"]),
            h.get("kind", "release"),
            h["model_version"],
            str(h.get("dataset_version")),
            h["created"],
            f"{rollout['status']}: "
            + ", ".join(f"{d['decision']} at {d['stage_percent']} %" for d in rollout["decisions"])
            if rollout
            else "-",
        )
    out.print(history)


def add_release_parser(sub: argparse._SubParsersAction) -> None:
    rel = sub.add_parser("release", help="OTA release: keys, rollout status").add_subparsers(
        dest="release_command", required=True
    )
    keys = rel.add_parser("keys", help="TUF signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    ki = keys.add_parser("init", help="generate ed25519 keys for every role (local use)")
    ki.add_argument("dir", help="folder the keys go to (created if missing)")
    ki.add_argument("--json", action="store_true", help="print JSON instead of text")
    ki.set_defaults(func=cmd_keys_init)
    s = rel.add_parser("status", help="production, the rollout stage, decisions, history")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_status)
