"""Adapters: what each channel of a drive log decodes into, declared as data.

An adapter (``assets/ingest/adapters/*.yaml``) maps a schema name and message encoding,
optionally narrowed to a topic pattern, to one canonical table (``ingest/tables.py``), with
each column as a field path (plus unit, scale, offset, enum names or a derivation) or a
constant. Mapping by type is the default: a standard message lands in its table whatever its
topic; an adapter with a ``topic`` wins over one without for the topics it matches.

Paths are checked when the rules load against the definitions the package knows (the
contract, every Foxglove schema, the ROS 2 messages of ``dataloop.fleet.ros2_msgs``), and
otherwise, for a fleet's own messages, against the definition the log embeds when its channel
appears: a path the log's schema lacks quarantines that drive as ``adapter_mismatch``, naming
the adapter's file and line (fix the adapter, and a backfill re-decodes).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from dataloop import rules
from dataloop.ingest.adapters.fields import FieldType, PathError
from dataloop.ingest.adapters.known import known_fields
from dataloop.ingest.tables import ADAPTER_COLUMNS, BLOB_NEEDS, SENSOR_COLUMN, TOGETHER
from dataloop.rules import schemas as S


@dataclass(frozen=True)
class Adapter:
    schema: str
    encodings: tuple[str, ...]
    table: str
    topic: str | None
    time: str | dict
    rows: str | None
    sensor: str | dict | None
    columns: tuple[tuple[str, dict[str, Any]], ...]
    """(column, spec) in file order; a bare path is ``{"path": ...}``."""
    where: str
    """``file, line N``: where a person fixes it."""
    lines: tuple[tuple[str, str], ...] = ()
    """(what: a column, or ``@time``/``@rows``/``@sensor``; ``file, line N`` of it)."""

    def matches(self, topic: str, schema: str, encoding: str) -> bool:
        return (
            schema == self.schema
            and encoding in self.encodings
            and (self.topic is None or fnmatch.fnmatchcase(topic, self.topic))
        )

    def paths(self) -> list[tuple[str, str]]:
        """(what, path) for every field path, each relative to what it reads."""
        out = []
        if isinstance(self.time, dict):
            out.append(("@time", self.time["path"]))
        if self.rows:
            out.append(("@rows", self.rows))
        if isinstance(self.sensor, dict):
            out.append(("@sensor", self.sensor["path"]))
        out += [(name, spec["path"]) for name, spec in self.columns if "path" in spec]
        return out

    def check(self, fields: FieldType) -> None:
        """Raise :class:`PathError` (with ``where``) unless every path exists in ``fields``."""
        from dataloop.ingest.adapters.fields import resolve

        rows = resolve(fields, self.rows) if self.rows else None
        if rows is None:
            element = fields
        elif rows.kind == "any":  # a schema that declares nothing: nothing to check
            element = rows
        elif rows.repeated and rows.kind == "message":
            element = FieldType("message", children=rows.children)
        else:
            raise PathError(f"{self.where}: rows {self.rows!r} is not an array of messages")
        for what, path in self.paths():
            try:
                resolve(fields if what.startswith("@") else element, path)
            except PathError as err:
                where = dict(self.lines).get(what, self.where)
                raise PathError(f"{where}: {what.lstrip('@')}: {err}") from None


@dataclass(frozen=True)
class AdapterSet:
    adapters: tuple[Adapter, ...]
    digest: str

    def find(self, topic: str, schema: str, encoding: str) -> Adapter | None:
        """The adapter of a channel: one naming its topic first, else one by type."""
        hits = [a for a in self.adapters if a.matches(topic, schema, encoding)]
        hits.sort(key=lambda a: a.topic is None)
        return hits[0] if hits else None


def adapter_files(directory: Path | None = None) -> list[Path]:
    return sorted(((directory or rules.rules_dir()) / "ingest" / "adapters").glob("*.yaml"))


def load_adapters(files: dict[Path, bytes | None] | None = None) -> AdapterSet:
    """Every adapter of the rules folder (or of ``files``, their bytes); raises
    :class:`rules.RulesError` naming file and line."""
    import hashlib

    files = files if files is not None else {p: None for p in adapter_files()}
    context = {
        "tables": ADAPTER_COLUMNS,
        "sensed": tuple(SENSOR_COLUMN),
        "needs": BLOB_NEEDS,
        "together": TOGETHER,
    }
    digest, out, errors = hashlib.sha256(), [], []
    seen: dict[tuple, str] = {}
    for path, data in files.items():
        raw = rules.read_bytes(path, data)
        digest.update(path.name.encode() + b"\0" + raw)
        doc, node = rules.parse(path, raw)
        rules.validate(path, doc, node, S.Adapters, context)
        items = node.value[[k.value for k, _ in node.value].index("adapters")][1].value
        for item, item_node in zip(doc["adapters"], items, strict=True):
            adapter = _adapter(item, item_node, rules.display(path))
            for encoding in adapter.encodings:
                key = (adapter.schema, encoding, adapter.topic)
                if key in seen:
                    errors.append(
                        f"{adapter.where}: {key[0]} ({encoding}) is also mapped at {seen[key]}"
                    )
                seen.setdefault(key, adapter.where)
                fields = known_fields(adapter.schema, encoding)
                if fields is not None:
                    try:
                        adapter.check(fields)
                    except PathError as err:
                        errors.append(str(err))
            out.append(adapter)
    if errors:
        raise rules.RulesError("\n".join(dict.fromkeys(errors)))
    return AdapterSet(tuple(out), digest.hexdigest()[:16])


def _key_lines(node: yaml.MappingNode, file: str) -> dict[str, str]:
    """``file, line N`` of each key of a (validated) YAML mapping."""
    return {k.value: f"{file}, line {k.start_mark.line + 1}" for k, _ in node.value}


def _adapter(item: dict[str, Any], node: yaml.MappingNode, file: str) -> Adapter:
    keys = {k.value: v for k, v in node.value}
    lines = {
        f"@{k}": v for k, v in _key_lines(node, file).items() if k in ("time", "rows", "sensor")
    }
    lines |= _key_lines(keys["columns"], file)
    columns = tuple(
        (name, {"path": spec} if isinstance(spec, str) else dict(spec))
        for name, spec in item["columns"].items()
    )  # as parsed: the rules keep their bytes and hash, so a bare path stays a string here
    return Adapter(
        schema=item["schema"],
        encodings=tuple(item["encodings"]),
        table=item["table"],
        topic=item.get("topic"),
        time=item.get("time", "log_time"),
        rows=item.get("rows"),
        sensor=item.get("sensor"),
        columns=columns,
        where=f"{file}, line {node.start_mark.line + 1}",
        lines=tuple(lines.items()),
    )


def adapters_snapshot(directory: Path | None = None) -> rules.Snapshot[AdapterSet]:
    """The adapters' files read now, validated on first use."""
    return rules.Snapshot(adapter_files(directory), lambda files: load_adapters(dict(files)))


@lru_cache(maxsize=1)
def installed() -> rules.Snapshot[AdapterSet]:
    """The adapters of this process's rules folder (read once)."""
    return adapters_snapshot()
