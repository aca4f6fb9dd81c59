"""The fields of a message schema, whatever its language (protobuf descriptors, ROS ``.msg``
text, JSON Schema), as one tree: what an adapter's field paths are checked against, and what
``adapters suggest`` lists.

A field path is dotted names with optional indexes: ``header.stamp``,
``position_covariance[0]``, ``objects``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor import FieldDescriptor as FD

MAX_DEPTH = 12
"""Nesting beyond this is not expanded (recursive protobuf messages)."""


@dataclass(frozen=True)
class FieldType:
    kind: str
    """``number``, ``bool``, ``string``, ``bytes``, ``enum``, ``message``, or ``any`` (a
    schema that declares no fields, such as JSON without a schema: nothing to check)."""
    repeated: bool = False
    children: dict[str, FieldType] = field(default_factory=dict)
    enum: dict[int, str] = field(default_factory=dict)
    type_name: str = ""


class PathError(ValueError):
    """A field path that the schema does not have."""


_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


def parse_path(path: str) -> list[tuple[str, int | None]]:
    """``a.b[2].c`` -> ``[("a", None), ("b", 2), ("c", None)]``."""
    steps = []
    for part in path.split("."):
        m = _STEP.match(part)
        if not m:
            raise PathError(f"field path {path!r}: {part!r} is not a name or name[index]")
        steps.append((m.group(1), None if m.group(2) is None else int(m.group(2))))
    return steps


def resolve(root: FieldType, path: str) -> FieldType:
    """The type at ``path`` (an indexed repeated field is its element); raises
    :class:`PathError` naming the fields that exist where the path goes wrong."""
    node = root
    for name, index in parse_path(path):
        if node.kind == "any":
            return node
        if node.kind != "message":
            raise PathError(f"field path {path!r}: {node.type_name or node.kind} has no fields")
        if node.repeated:
            raise PathError(f"field path {path!r}: an array needs an index before '.{name}'")
        if name not in node.children:
            close = difflib.get_close_matches(name, list(node.children), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PathError(
                f"field path {path!r}: no field {name!r} in {node.type_name}{hint}; "
                f"fields: {', '.join(node.children)}"
            )
        node = node.children[name]
        if index is not None:
            if not node.repeated:
                raise PathError(f"field path {path!r}: {name} is not an array")
            node = FieldType(node.kind, False, node.children, node.enum, node.type_name)
    return node


def describe(root: FieldType, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Every leaf path and its type, for people (``adapters suggest``)."""
    out = []
    for name, f in root.children.items():
        path = f"{prefix}{name}"
        label = (f.type_name or f.kind) + ("[]" if f.repeated else "")
        if f.kind == "message" and not f.repeated and depth < 4:
            out += describe(f, path + ".", depth + 1)
        else:
            out.append((path, label))
    return out


# -- protobuf ---------------------------------------------------------------------------------
_PB_KINDS = {
    FD.TYPE_STRING: "string",
    FD.TYPE_BYTES: "bytes",
    FD.TYPE_BOOL: "bool",
    FD.TYPE_ENUM: "enum",
    FD.TYPE_MESSAGE: "message",
    FD.TYPE_GROUP: "message",
}


def from_protobuf(
    descriptor: Descriptor, depth: int = 0, seen: dict[str, FieldType] | None = None
) -> FieldType:
    """The tree of a protobuf message (each type built once: a hostile descriptor of many
    fields per level costs its size, not its size to the power of its depth)."""
    seen = {} if seen is None else seen
    if descriptor.full_name in seen:
        return seen[descriptor.full_name]
    children: dict[str, FieldType] = {}
    if depth < MAX_DEPTH:
        for f in descriptor.fields:
            kind = _PB_KINDS.get(f.type, "number")
            children[f.name] = FieldType(
                kind,
                f.is_repeated,
                from_protobuf(f.message_type, depth + 1, seen).children
                if kind == "message"
                else {},
                {v.number: v.name for v in f.enum_type.values} if kind == "enum" else {},
                f.message_type.full_name if kind == "message" else "",
            )
    seen[descriptor.full_name] = FieldType(
        "message", children=children, type_name=descriptor.full_name
    )
    return seen[descriptor.full_name]


# -- ROS .msg text (ros2msg and ros1msg) ------------------------------------------------------
_ROS_NUMBERS = {
    "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64",
}  # fmt: skip
_ROS_TIME = {  # ROS 1 built-in time types, ROS 2's builtin_interfaces
    "time": ("secs", "nsecs"),
    "duration": ("secs", "nsecs"),
    "builtin_interfaces/Time": ("sec", "nanosec"),
    "builtin_interfaces/Duration": ("sec", "nanosec"),
}
_ROS_FIELD = re.compile(r"^([A-Za-z0-9_/]+)(<=\d+)?(\[(?:<=)?\d*\])?\s+([A-Za-z_][A-Za-z0-9_]*)")


def ros_key(type_name: str, package: str) -> str:
    """``pkg/msg/Type`` and ``Type`` (in ``package``) -> ``pkg/Type``."""
    parts = type_name.split("/")
    if len(parts) == 1:
        return "std_msgs/Header" if type_name == "Header" else f"{package}/{type_name}"
    return f"{parts[0]}/{parts[-1]}"


def ros_definitions(name: str, text: str) -> dict[str, list[tuple[str, str, int | None]]]:
    """The message definitions in a ROS schema (the main one under ``name``, then every
    ``MSG: pkg/Type`` block): ``pkg/Type`` -> [(field, type, array)], where array is None
    (a single value), -1 (a sequence) or the fixed length."""
    blocks: dict[str, list[str]] = {}
    current = ros_key(name, name.split("/")[0])
    blocks[current] = []
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if re.fullmatch(r"=+", stripped) and len(stripped) >= 3:
            current = ""
            continue
        if stripped.startswith("MSG:"):
            current = ros_key(stripped[4:].strip(), "")
            blocks.setdefault(current, [])  # an empty message is a type too
            continue
        if current and stripped:
            blocks.setdefault(current, []).append(stripped)
    out: dict[str, list[tuple[str, str, int | None]]] = {
        "builtin_interfaces/Time": [("sec", "int32", None), ("nanosec", "uint32", None)],
        "builtin_interfaces/Duration": [("sec", "int32", None), ("nanosec", "uint32", None)],
    }  # implied when a text leaves them out, as the ROS 2 tools do
    for key, lines in blocks.items():
        fields = out[key] = []
        for line in lines:
            m = _ROS_FIELD.match(line)
            if not m or line[m.end() :].lstrip().startswith("="):
                continue  # not a field, or a constant (NAME=value)
            bracket = m.group(3)
            size = bracket.strip("[]<=") if bracket else ""
            array = None if bracket is None else int(size) if size and "<" not in bracket else -1
            fields.append((m.group(4), m.group(1) + (m.group(2) or ""), array))
    return out


def from_ros(name: str, text: str) -> FieldType:
    """The tree of a ``ros2msg``/``ros1msg`` schema ``name`` (``pkg/msg/Type``)."""
    defs = ros_definitions(name, text)
    built: dict[str, FieldType] = {}  # each type once (see from_protobuf)

    def build(key: str, depth: int) -> FieldType:
        if key in built:
            return built[key]
        children: dict[str, FieldType] = {}
        package = key.split("/")[0]
        for fname, ftype, array in defs.get(key, []) if depth < MAX_DEPTH else []:
            repeated = array is not None
            ftype = ftype.split("<=")[0]  # a bounded string is a string
            if ftype in _ROS_NUMBERS:  # uint8[] is a byte string to the decoders
                blob = repeated and ftype in ("uint8", "byte")
                children[fname] = FieldType("bytes" if blob else "number", repeated and not blob)
                continue
            if ftype in ("bool", "string", "wstring"):
                children[fname] = FieldType("bool" if ftype == "bool" else "string", repeated)
                continue
            sub_key = ftype if ftype in ("time", "duration") else ros_key(ftype, package)
            if sub_key in _ROS_TIME:
                sec, nsec = _ROS_TIME[sub_key]
                sub = {sec: FieldType("number"), nsec: FieldType("number")}
                children[fname] = FieldType("message", repeated, sub, {}, sub_key)
                continue
            node = build(sub_key, depth + 1)
            children[fname] = FieldType("message", repeated, node.children, {}, sub_key)
        built[key] = FieldType("message", children=children, type_name=key)
        return built[key]

    root = build(ros_key(name, name.split("/")[0]), 0)
    return FieldType("message", children=root.children, type_name=name)


# -- JSON Schema --------------------------------------------------------------------------------
_JSON_KINDS = {"number": "number", "integer": "number", "string": "string", "boolean": "bool"}


def from_jsonschema(doc: dict[str, Any], name: str = "", depth: int = 0) -> FieldType:
    children = {}
    for fname, spec in (doc.get("properties") or {}).items() if depth < MAX_DEPTH else []:
        children[fname] = _json_field(spec if isinstance(spec, dict) else {}, depth)
    return FieldType("message", children=children, type_name=name or str(doc.get("title", "")))


def _json_field(spec: dict[str, Any], depth: int) -> FieldType:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "array":
        inner = _json_field(spec.get("items") or {}, depth)
        return FieldType(inner.kind, True, inner.children, {}, inner.type_name)
    if kind == "object" or "properties" in spec:
        return from_jsonschema(spec, str(spec.get("title", "")), depth + 1)
    if kind == "string" and spec.get("contentEncoding") == "base64":
        return FieldType("bytes")
    return FieldType(_JSON_KINDS.get(kind, "string"))
