"""Retention per zone of the lake (assets/quality/retention.yaml), applied by a scheduled
asset: objects older than their zone's limit are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from dataloop import rules
from dataloop.lake import layout as L
from dataloop.lake.store import ObjectStore
from dataloop.rules import schemas as S

NEVER_SWEPT = L.never_swept()
"""The lake's indexes, history, artefacts and releases: no retention rule sweeps them."""


def load_retention(path: Path, data: bytes | None = None) -> dict[str, dict]:
    """The zones of ``path`` (or of ``data``, its bytes). Each is a zone of the lake layout
    that expires by age, with the layout's prefixes; a prefix of the lake's index
    (``NEVER_SWEPT``) is an error (``RulesError``: file, line)."""
    doc, node = rules.parse(path, data)
    rules.validate(path, doc, node, S.Retention, context={"never_swept": NEVER_SWEPT})
    aged = {z.name: z for z in L.aged_zones()}
    problems = []
    for name, zone in doc["zones"].items():
        if name not in aged:
            problems.append(
                (name, f"unknown zone {name!r}; allowed: {', '.join(aged)} (lake/layout.py)")
            )
        elif sorted(zone["prefixes"]) != sorted(aged[name].prefixes):
            problems.append(
                (
                    name,
                    f"zone {name!r}: prefixes {', '.join(zone['prefixes'])}; the lake layout's "
                    f"are {', '.join(aged[name].prefixes)}",
                )
            )
    if problems:
        raise rules.RulesError(
            "\n".join(f"{rules.display(path)}, line {_line(node, n)}: {p}" for n, p in problems)
        )
    return doc["zones"]


def _line(node: yaml.Node | None, zone: str) -> int:
    """The line (1-based) of ``zone``'s key under ``zones:``."""
    for key, value in node.value if isinstance(node, yaml.MappingNode) else []:
        if key.value == "zones" and isinstance(value, yaml.MappingNode):
            for k, _ in value.value:
                if k.value == zone:
                    return k.start_mark.line + 1
    return 1


def sweep(store: ObjectStore, zones: dict[str, dict], now: datetime | None = None) -> dict:
    """Delete what each zone no longer keeps; returns {zone: {"deleted": n, "bytes": b}}."""
    now = now or datetime.now(UTC)
    report = {}
    for name, zone in zones.items():
        cutoff = now - timedelta(days=zone["days"])
        deleted = size = 0
        for prefix in zone["prefixes"]:
            for info in list(store.list(prefix)):
                if info.last_modified < cutoff:
                    store.delete(info.key)
                    deleted += 1
                    size += info.size
        report[name] = {"deleted": deleted, "bytes": size, "days": zone["days"]}
    return report
