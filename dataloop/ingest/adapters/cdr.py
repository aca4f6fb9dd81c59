"""A fast CDR path: a reader generated for one ROS 2 schema and the field paths one adapter
reads, that unpacks those fields at their computed offsets, skips the rest without building
it, and stops once it has them all.

mcap-ros2-support's dynamic decoder builds every field of every message in pure Python (an
IMU message: about 40 objects and lists, for six numbers an adapter reads), which made ROS 2
ingest a third as fast as plain MCAP iteration. The generated reader gives the same values
(tests/test_adapters.py checks it against that decoder); it serves adapters whose paths are
scalars, strings, byte strings or arrays of numbers (and messages of scalars: stamps,
quaternions), and the elements of an adapter's ``rows``. Anything else, and any payload that
is not little-endian CDR, takes the dynamic decoder. Like any reader that stops early, it
does not notice bytes missing after the last field it reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from struct import unpack_from
from typing import Any

from dataloop.ingest.adapters.fields import ros_definitions, ros_key

PRIMITIVES = {
    "bool": ("?", 1),
    "byte": ("B", 1),
    "char": ("b", 1),
    "int8": ("b", 1),
    "uint8": ("B", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "uint64": ("Q", 8),
    "float32": ("f", 4),
    "float64": ("d", 8),
}


MAX_DEPTH, MAX_LINES = 32, 20_000
"""Beyond these the dynamic decoder reads the channel (which fails on a type that contains
itself, quarantining the drive as undecodable)."""


class Unsupported(Exception):
    """The paths need what the generated reader does not build (a whole message, rows)."""


def _align(size: int, pad: str) -> list[str]:
    return [f"{pad}o += (4 - o) % {size}"] if size > 1 else []


class _Gen:
    """Emits the reader's lines: stores wanted paths into the dict ``var``, and each array
    of ``rows`` as a list of dicts of its elements' wanted paths."""

    def __init__(
        self,
        defs: dict[str, list[tuple[str, str, int | None]]],
        wanted: set[str],
        rows: dict[str, set[str]] | None = None,
        var: str = "v",
        skippers: dict[str, list[str]] | None = None,
    ):
        self.defs = defs
        self.wanted = wanted
        self.rows = rows or {}
        self.var = var
        self.left = len(wanted) + len(self.rows)
        self.skippers = skippers if skippers is not None else {}

    def needed(self, path: str) -> bool:
        return any(w == path or w.startswith(path + ".") for w in (*self.wanted, *self.rows))

    def message(self, key: str, prefix: str, pad: str, out: list[str], store: bool) -> bool:
        """Emit reads of ``key``'s fields; True once every wanted path is read (the reader
        returns there; an element reader, ``var`` other than ``v``, reads every field)."""
        if key not in self.defs:
            raise Unsupported(f"no definition of {key}")
        if prefix.count(".") > MAX_DEPTH or len(out) > MAX_LINES:  # a type that contains
            raise Unsupported(f"{key}: nested too deep or too wide")  # itself, or a bomb
        fields = self.defs[key]
        if not fields:  # an empty message is one uint8 on the wire
            out.append(f"{pad}o += 1")
        package = key.split("/")[0]
        for name, ftype, array in fields:
            path = prefix + name
            keep = store and path in self.wanted
            if keep and ftype not in PRIMITIVES and not ftype.startswith("string"):
                raise Unsupported(f"{path}: a whole message")
            if ftype in PRIMITIVES:
                self.primitive(ftype, array, path if keep else None, pad, out)
            elif ftype == "string" or ftype.startswith("string<="):
                self.string(array, path if keep else None, pad, out)
            else:
                sub = ros_key(ftype, package)
                if array is None:
                    if self.message(sub, path + ".", pad, out, store and self.needed(path)):
                        return True
                elif store and path in self.rows:
                    self.elements(sub, array, path, pad, out)
                    keep = True
                elif store and self.needed(path):
                    raise Unsupported(f"{path}: inside an array of messages")
                else:
                    self.skip_array(sub, array, pad, out)
            if keep:
                self.left -= 1
                if self.left == 0 and self.var == "v":
                    out.append(f"{pad}return v")
                    return True
        return False

    def elements(self, key: str, array: int, path: str, pad: str, out: list[str]) -> None:
        """``v[path]``: a list with a dict of the wanted paths of each element."""
        out += _align(4, pad) if array < 0 else []
        out.append(f"{pad}n = _u('<I', b, o)[0]; o += 4" if array < 0 else f"{pad}n = {array}")
        out.append(f"{pad}if n > len(b): raise ValueError('array past the end')")
        out.append(f"{pad}rows = []")
        out.append(f"{pad}for _ in range(n):")
        out.append(f"{pad}    e = {{}}")
        inner = _Gen(self.defs, self.rows[path], var="e", skippers=self.skippers)
        inner.message(key, "", pad + "    ", out, True)
        if inner.left:
            raise Unsupported(f"{path}: element paths not reached")
        out.append(f"{pad}    rows.append(e)")
        out.append(f"{pad}{self.var}[{path!r}] = rows")

    def primitive(self, ftype: str, array: int | None, path: str | None, pad: str, out) -> None:
        code, size = PRIMITIVES[ftype]
        if array is None:
            out += _align(size, pad)
            if path:
                out.append(f"{pad}{self.var}[{path!r}] = _u('<{code}', b, o)[0]")
            out.append(f"{pad}o += {size}")
            return
        if array < 0:
            out += _align(4, pad)
            out.append(f"{pad}n = _u('<I', b, o)[0]; o += 4")
            count = "n"
        else:
            count = str(array)
        out.append(f"{pad}if o + {count} * {size} > len(b): raise ValueError('array past the end')")
        if size > 1:
            out.append(f"{pad}if {count}: o += (4 - o) % {size}")
        if path and ftype in ("uint8", "byte"):
            out.append(f"{pad}{self.var}[{path!r}] = b[o : o + {count}]")
        elif path:
            out.append(f"{pad}{self.var}[{path!r}] = list(_u(f'<{{{count}}}{code}', b, o))")
        out.append(f"{pad}o += {count} * {size}")

    def string(self, array: int | None, path: str | None, pad: str, out: list[str]) -> None:
        if array is not None:
            if path:
                raise Unsupported(f"{path}: an array of strings")
            out += _align(4, pad)
            if array < 0:
                out.append(f"{pad}n2 = _u('<I', b, o)[0]; o += 4")
            else:
                out.append(f"{pad}n2 = {array}")
            out.append(f"{pad}if n2 > len(b): raise ValueError('array past the end')")
            out.append(f"{pad}for _ in range(n2):")
            self.string(None, None, pad + "    ", out)
            return
        out += _align(4, pad)
        out.append(f"{pad}n = _u('<I', b, o)[0]; o += 4")
        out.append(f"{pad}if o + n > len(b): raise ValueError('string past the end')")
        if path:
            out.append(f"{pad}{self.var}[{path!r}] = b[o : o + n - 1].decode() if n > 1 else ''")
        out.append(f"{pad}o += n")

    def skip_array(self, key: str, array: int, pad: str, out: list[str]) -> None:
        name = self.skipper(key)
        if array < 0:
            out += _align(4, pad)
            out.append(f"{pad}n = _u('<I', b, o)[0]; o += 4")
            out.append(f"{pad}if n > len(b): raise ValueError('array past the end')")
            out.append(f"{pad}for _ in range(n): o = {name}(b, o)")
        else:  # every message is at least one byte on the wire
            out.append(f"{pad}if {array} > len(b) - o: raise ValueError('array past the end')")
            out.append(f"{pad}for _ in range({array}): o = {name}(b, o)")

    def skipper(self, key: str) -> str:
        """A function ``(b, o) -> o`` that steps over one ``key`` message."""
        name = "skip_" + re.sub(r"\W", "_", key)
        if name not in self.skippers:
            self.skippers[name] = []
            body: list[str] = [f"def {name}(b, o, _u=_u):"]
            _Gen(self.defs, set(), skippers=self.skippers).message(key, "", "    ", body, False)
            self.skippers[name] = [*body, "    return o"]
        return name


@functools.lru_cache(maxsize=256)
def _compiled(source: str, name: str) -> Any:
    """A reader's code, compiled once per process (each drive binds its channels anew)."""
    return compile(source, name, "exec")


def compile_reader(
    name: str,
    text: str,
    paths: set[str],
    fallback: Callable[[bytes], dict[str, Any]],
    rows: dict[str, set[str]] | None = None,
) -> Callable[[bytes], dict[str, Any]]:
    """``read(payload) -> {path: value}`` for the ``paths`` of schema ``name`` (its
    ``ros2msg`` text) and, for each array of messages in ``rows``, a list of dicts of its
    elements' paths; little-endian CDR by the generated reader and any other payload by
    ``fallback``. Raises :class:`Unsupported` when a path needs the dynamic decoder."""
    defs = ros_definitions(name, text)
    gen = _Gen(defs, set(paths), rows)
    body = ["def read(b, _u=_u):", "    o = 4", "    v = {}"]
    root = ros_key(name, name.split("/")[0])
    if not gen.left or not gen.message(root, "", "    ", body, True):
        raise Unsupported(f"paths not reached: {', '.join(sorted(paths))}")
    source = "\n".join([*(line for fn in gen.skippers.values() for line in fn), *body])
    scope: dict[str, Any] = {"_u": unpack_from}
    exec(_compiled(source, f"<cdr reader {name}>"), scope)  # noqa: S102
    little = scope["read"]

    def read(payload: bytes) -> dict[str, Any]:
        # the encapsulation: 1 is plain CDR little endian (what ROS 2 writes on x86 and ARM),
        # 0 big endian, 2-3 parameter lists (XCDR1); XCDR2 (6-11) nothing here reads right
        kind = payload[1]
        if kind == 1:
            return little(payload)
        if kind <= 3:
            return fallback(payload)
        raise ValueError(f"CDR encapsulation kind {kind} (XCDR2) is not supported")

    return read
