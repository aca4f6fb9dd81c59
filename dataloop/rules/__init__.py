"""The rules folder: the declarative rules of top-level ``assets/`` (quality suites, geofence,
retention, curation, training, gate, rollout, labelling), read as validated data.

Where: ``$DATALOOP_RULES`` when set, else the copy shipped in the wheel (the package
``dataloop_rules``, which is top-level ``assets/`` in the source tree), else the checkout's
``assets/`` (an editable install made before the rules were packaged).

Why pydantic and line numbers: a rule file is edited by people who do not read the code, so
an error must say where (file, line) and what is allowed (``unknown key 'min_clipz';
allowed: ...``), never end in a bare ``TypeError`` or a traceback through the YAML parser.
A loader returns the document exactly as parsed (validation only checks it), so valid rules
behave, and hash, as they always did.

Why snapshots: the Dagster definitions must load even when one rule file is broken (the
code location carries every stage). :class:`Snapshot` reads a file's bytes at import (which
cannot fail on their content) and validates them when first asked, which for most assets is
their ``code_version`` at import; it never raises there. The asset gets a code version either
way: the rules' own one, or ``invalid-rules:<hash of the bytes>`` while its runs fail with
the file:line message. Where an asset applies the snapshot itself (quality, compliance,
labelling, curation), the bytes it applies are the bytes its code version hashed.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

RULES_ENV = "DATALOOP_RULES"
PACKAGE = "dataloop_rules"
"""The rules inside the wheel (setup.py maps top-level assets/ to it)."""
INVALID = "invalid-rules"
"""``code_version`` prefix of an asset whose rule files do not validate."""

T = TypeVar("T")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML has it (ten times faster; the same documents and marks)."""


class RulesError(ValueError):
    """A rule file that does not parse or validate; the message names file, line and what
    is allowed, one problem per line."""


def rules_dir() -> Path:
    """``$DATALOOP_RULES``, else the packaged rules, else the checkout's ``assets/``."""
    if os.environ.get(RULES_ENV):
        return Path(os.environ[RULES_ENV])
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "assets"


def display(path: Path) -> str:
    """The path as a person finds it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_bytes(path: Path, data: bytes | None = None) -> bytes:
    if data is not None:
        return data
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RulesError(f"{display(path)}: no such rule file") from None


def parse(path: Path, data: bytes | None = None) -> tuple[Any, yaml.Node | None]:
    """The YAML document and its node tree (for line numbers); a syntax error names the
    file and line."""
    raw = read_bytes(path, data)
    try:
        loader = _LOADER(raw)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        what = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise RulesError(f"{display(path)}{line}: invalid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise RulesError(f"{display(path)}: invalid YAML: {err}") from None
    return doc, node


def load(
    path: Path, model: type[BaseModel], data: bytes | None = None, context: dict | None = None
) -> Any:
    """The document of ``path`` (or of ``data``, its bytes) checked against ``model``,
    exactly as parsed (``context``: what the model's validators need to know)."""
    doc, node = parse(path, data)
    validate(path, doc, node, model, context)
    return doc


def validate(
    path: Path,
    doc: Any,
    node: yaml.Node | None,
    model: type[BaseModel],
    context: dict | None = None,
) -> None:
    if not isinstance(doc, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        keys = ", ".join(_keys(model))
        raise RulesError(f"{display(path)}, line {line}: expected a mapping with keys {keys}")
    try:
        model.model_validate(doc, context=context)
    except ValidationError as err:
        found = sorted(
            ((_line(node, e["loc"]), _explain(model, e)) for e in err.errors(include_url=False)),
            key=lambda found: found[0],
        )
        lines = [f"{display(path)}, line {line}: {what}" for line, what in found]
        raise RulesError("\n".join(dict.fromkeys(lines))) from None


class Snapshot(Generic[T]):
    """Rule files read at import, validated when first asked (errors kept, never raised
    before ``get``): the definitions load whatever the files hold, and only the assets that
    use a broken file fail."""

    def __init__(self, paths: Iterable[Path], build: Callable[[Mapping[Path, bytes | None]], T]):
        self.files = {p: (p.read_bytes() if p.is_file() else None) for p in paths}
        self._build = build
        self._value: T | None = None
        self._error: RulesError | None = None
        self._done = False

    @property
    def digest(self) -> str:
        """Hash of the files' names and bytes (missing files hash as absent)."""
        h = hashlib.sha256()
        for p, raw in self.files.items():
            h.update(p.name.encode() + b"\0" + (b"-" if raw is None else raw))
        return h.hexdigest()[:16]

    def get(self) -> T:
        """The validated rules; raises :class:`RulesError` (every time) when they are not."""
        if not self._done:
            try:
                self._value = self._build(self.files)
            except RulesError as err:
                self._error = err
            self._done = True
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    @property
    def error(self) -> RulesError | None:
        try:
            self.get()
        except RulesError as err:
            return err
        return None

    def version(self, of: Callable[[T], str]) -> str:
        """``of(rules)``, or ``invalid-rules:<digest>`` when they do not validate (a code
        version that changes again once the file is fixed)."""
        return f"{INVALID}:{self.digest}" if self.error else of(self.get())


def snapshot(path: Path, loader: Callable[[Path, bytes | None], T]) -> Snapshot[T]:
    """One rule file, loaded by ``loader(path, data)``."""
    return Snapshot([path], lambda files: loader(path, files[path]))


# -- error messages -----------------------------------------------------------------------
def _line(node: yaml.Node | None, loc: tuple) -> int:
    """Line (1-based) of the node at ``loc``: the key's line for a mapping entry."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                continue  # a union tag or a missing key: stay on the parent
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _unwrap(tp: Any) -> list[Any]:
    """The alternatives of an annotation (Optional/Union/Annotated removed)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [a for arg in typing.get_args(tp) for a in _unwrap(arg) if a is not type(None)]
    return [tp]


def _at(model: Any, loc: tuple) -> Any:
    """The annotation at ``loc`` inside ``model`` (None when it cannot be followed)."""
    tp, parts = model, list(loc)
    while parts:
        part = parts.pop(0)
        nxt = None
        for alt in _unwrap(tp):
            origin = typing.get_origin(alt)
            if isinstance(alt, type) and issubclass(alt, BaseModel):
                fields = {f.alias or n: f for n, f in alt.model_fields.items()}
                field = fields.get(str(part))
                nxt = field.annotation if field else None
            elif origin in (list, tuple) and isinstance(part, int):
                nxt = typing.get_args(alt)[0]
            elif origin is dict and parts[:1] == ["[key]"]:  # the key itself is wrong
                nxt = typing.get_args(alt)[0]
                parts.pop(0)
            elif origin is dict:
                nxt = typing.get_args(alt)[1]
            if nxt is not None:
                break
        if nxt is None:
            return None
        tp = nxt
    return tp


def _keys(model: Any) -> list[str]:
    for alt in _unwrap(model):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return [f.alias or name for name, f in alt.model_fields.items()]
    return []


def _allowed_values(tp: Any) -> list[str]:
    out = []
    for alt in _unwrap(tp):
        if typing.get_origin(alt) is typing.Literal:
            out += [str(a) for a in typing.get_args(alt)]
    return out


def _explain(model: type[BaseModel], e: dict) -> str:
    loc = tuple(e["loc"])
    where = ".".join(str(p) for p in loc if p != "[key]")
    kind = e["type"]
    if kind == "extra_forbidden":
        keys = _keys(_at(model, loc[:-1]))
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {loc[-1]!r}{hint}; allowed: {', '.join(keys)}"
    if kind == "missing":
        parent = ".".join(str(p) for p in loc[:-1])
        return f"missing key {loc[-1]!r}" + (f" in {parent}" if parent else "")
    if kind in ("literal_error", "enum"):
        allowed = _allowed_values(_at(model, loc)) or [e.get("ctx", {}).get("expected", "?")]
        if loc[-1] == "[key]":
            where = ".".join(str(p) for p in loc[:-2])
            return f"{where}: key {e['input']!r} is not allowed; allowed: {', '.join(allowed)}"
        return f"{where}: {e['input']!r} is not allowed; allowed: {', '.join(allowed)}"
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "value_error" or kind == "assertion_error":
        return f"{where}: {msg}" if where else msg
    return f"{where}: {msg} (got {e['input']!r})"
