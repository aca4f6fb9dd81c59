"""What dataloop declares, what it imports, and the lock it is tested on agree.

- pyproject.toml's ranges admit every pin of requirements.lock;
- the lock is closed: exactly the packages the declared requirements pull in, transitively
  (a requirement added without re-locking, or a stale pin, fails);
- the environment the tests run in is the lock (CI installs with ``-c requirements.lock``);
- every third-party module dataloop/ imports is declared, and every declared runtime
  dependency is imported or named below with the reason it is needed.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _requirements(lines: list[str]) -> list[Requirement]:
    """``lines`` as requirements, with this project's own extras (``dataloop[spark]``) spelled
    out."""
    out: list[Requirement] = []
    for req in map(Requirement, lines):
        if canonicalize_name(req.name) == PROJECT["name"]:
            out += [r for extra in sorted(req.extras) for r in _requirements(EXTRAS[extra])]
        else:
            out.append(req)
    return out


# What dataloop's code may import: its dependencies and its feature extras (all but `test`).
RUNTIME = _requirements(
    PROJECT["dependencies"] + [r for name, rs in EXTRAS.items() if name != "test" for r in rs]
)
DECLARED = RUNTIME + _requirements(EXTRAS["test"])

NOT_IMPORTED = {
    "dagster-webserver": "the UI: `dagster dev`, `dataloop demo --ui`",
    "dagster-dg-cli": "`dg check defs` (tests/test_definitions.py)",
}


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` need in this environment, by their metadata."""
    seen: set[str] = set()
    todo = [(r, ("",)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for sub in md.distribution(name).requires or []:
            todo.append((Requirement(sub), ("", *req.extras)))
    return {k.split("[")[0] for k in seen}


def test_the_ranges_admit_the_lock():
    lock = _lock()
    for req in DECLARED:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is declared but not locked (run scripts/lock.py)"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"{req} does not admit the lock's {name}=={lock[name]}"
        )


def test_the_lock_is_closed_and_is_what_runs():
    lock = _lock()
    needed = _closure(DECLARED)
    assert needed - set(lock) == set(), "needed but not locked (run scripts/lock.py)"
    assert set(lock) - needed == set(), "locked but needed by nothing"
    installed = {n: Version(md.version(n)) for n in needed & set(lock)}
    # A pin has no local label: torch==2.13.0 is satisfied by the CPU build, 2.13.0+cpu.
    assert {n: str(v) for n, v in installed.items() if v.public != lock[n]} == {}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "dataloop").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"dataloop"}


def test_what_is_imported_is_declared_and_what_is_declared_is_used():
    owners = md.packages_distributions()
    declared = {canonicalize_name(r.name) for r in RUNTIME}
    used: set[str] = set()
    for module in _imported_top_levels():
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        assert dists, f"dataloop imports {module!r}, which no installed distribution provides"
        assert dists & declared, f"dataloop imports {module!r} ({sorted(dists)}): not declared"
        used |= dists & declared
    unused = declared - used - set(NOT_IMPORTED)
    assert unused == set(), f"declared but never imported: {sorted(unused)}"
    assert set(NOT_IMPORTED) <= declared
