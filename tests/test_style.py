"""The code stays ruff-clean (lint and format), so review is about substance."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
PATHS = ["dataloop", "tests", "benchmarks"]


def test_ruff_lint():
    proc = subprocess.run([RUFF, "check", *PATHS], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_ruff_format():
    proc = subprocess.run(
        [RUFF, "format", "--check", *PATHS], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


# -- the import graph ------------------------------------------------------------------------
# The layering of DESIGN.md, checked on the source (ast: every import, the lazy ones inside
# functions included): the data plane is plain Python that Dagster calls, the lake knows no
# stage, and the car runs without the cloud.
PACKAGE = REPO / "dataloop"
STAGES = (
    "ingest",
    "quality",
    "labeling",
    "curation",
    "search",
    "training",
    "simulation",
    "release",
    "lineage",
    "lake",
    "fleet",
    "policy",
)
"""The data plane: plain Python that the matching ``defs/`` folder calls."""
CLOUD_STAGES = (
    "ingest",
    "quality",
    "labeling",
    "curation",
    "search",
    "training",
    "simulation",
    "lineage",
    "defs",
)
"""What the car (``fleet/``) must run without."""
_PRIVATE_PATH = re.compile(r"^dagster\._[\w.]*$")
"""A private module named as a string (a config ``module:``, a ``mock.patch`` target)."""


@dataclass(frozen=True)
class Import:
    module: str  # the importing module: dataloop.fleet.ota
    name: str  # what it imports: dataloop.training.bundle, dagster, dagster._core.x
    where: str = ""  # path:line

    @property
    def package(self) -> str:
        """The importing module's package inside dataloop (``fleet``)."""
        parts = self.module.split(".")
        return parts[1] if len(parts) > 1 else ""

    @property
    def target(self) -> str:
        """The imported name's package inside dataloop; empty when it is not ours."""
        parts = self.name.split(".")
        return parts[1] if parts[0] == "dataloop" and len(parts) > 1 else ""


def _imports(path: Path, root: Path = REPO) -> list[Import]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative: resolved against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            out.append(Import(module, name, where))
            # `from dagster import _core`, `from dataloop import training`: modules too
            out += [Import(module, f"{name}.{alias.name}", where) for alias in node.names]
        elif isinstance(node, ast.Constant) and _PRIVATE_PATH.match(str(node.value)):
            out.append(Import(module, node.value, where))
    return out


def _all_imports() -> list[Import]:
    return [i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports(path)]


def _is_dagster(name: str) -> bool:
    root = name.split(".")[0]
    return root == "dagster" or (root.startswith("dagster_") and root != "dagster_pipes")


def _stage_imports_dagster(i: Import) -> bool:
    return i.package in STAGES and _is_dagster(i.name)


def _lake_imports_a_stage(i: Import) -> bool:
    return i.package == "lake" and i.target not in ("", "lake")


def _fleet_imports_the_cloud(i: Import) -> bool:
    return i.package == "fleet" and i.target in CLOUD_STAGES


def _fleet_imports_more_than_the_car(i: Import) -> bool:
    """The car needs its own code, what it runs and the lake; with the policy and lake rules
    this keeps every cloud stage out of the car transitively, lazy imports included."""
    return (
        i.package == "fleet"
        and i.name.startswith("dataloop")
        and i.target
        not in (
            "",
            "fleet",
            "lake",
            "policy",
            "processes",  # spawned process pools: the standard library only
        )
    )


def _policy_imports_more_than_the_lake(i: Import) -> bool:
    """What the car runs (``policy/``) is shared by training and simulation: it may import
    the lake and itself, nothing else of dataloop."""
    return (
        i.package == "policy"
        and i.name.startswith("dataloop")
        and i.target
        not in (
            "",
            "lake",
            "policy",
        )
    )


def _private_dagster(i: Import) -> bool:
    return _is_dagster(i.name) and any(p.startswith("_") for p in i.name.split(".")[1:])


@pytest.mark.parametrize(
    "breaks",
    [
        pytest.param(_stage_imports_dagster, id="no-dagster-in-the-stage-packages"),
        pytest.param(_lake_imports_a_stage, id="the-lake-imports-no-stage"),
        pytest.param(_fleet_imports_the_cloud, id="the-fleet-imports-no-cloud-stage"),
        pytest.param(_fleet_imports_more_than_the_car, id="the-fleet-imports-only-policy-and-lake"),
        pytest.param(_policy_imports_more_than_the_lake, id="the-policy-imports-only-the-lake"),
        pytest.param(_private_dagster, id="no-private-dagster-names"),
    ],
)
def test_import_graph(breaks):
    bad = {(i.where, i.module, i.name) for i in _all_imports() if breaks(i)}
    # `from a.b import c` breaks as a.b and as a.b.c: name the module once
    found = sorted(
        f"{where}: {module} imports {name}"
        for where, module, name in bad
        if (where, module, name.rpartition(".")[0]) not in bad
    )
    assert not found, "\n".join(found)


def test_the_import_rules_see_what_they_look_for(tmp_path):
    """A rule is only as good as the parser (one that matches nothing passes forever): it
    sees lazy imports, from-imports, relative imports and private paths in strings."""
    pkg = tmp_path / "dataloop" / "fleet"
    pkg.mkdir(parents=True)
    (pkg / "car.py").write_text(
        "from ..training import bundle\n"
        "def drive():\n"
        "    from dagster import _core\n"
        "    import dataloop.quality.hour\n"
        "    return 'dagster._core.launcher'\n"
    )
    found = _imports(pkg / "car.py", tmp_path)
    assert {i.name for i in found} == {
        "dataloop.training",
        "dataloop.training.bundle",
        "dagster",
        "dagster._core",
        "dataloop.quality.hour",
        "dagster._core.launcher",
    }
    assert {i.name for i in found if _fleet_imports_the_cloud(i)} == {
        "dataloop.training",
        "dataloop.training.bundle",
        "dataloop.quality.hour",
    }
    assert {i.name for i in found if _private_dagster(i)} == {
        "dagster._core",
        "dagster._core.launcher",
    }
    assert _stage_imports_dagster(Import("dataloop.lake.s3", "dagster_aws.s3"))
    assert not _stage_imports_dagster(Import("dataloop.training.train", "dagster_pipes"))
    assert _policy_imports_more_than_the_lake(Import("dataloop.policy.x", "dataloop.training"))
    assert not _policy_imports_more_than_the_lake(Import("dataloop.policy.x", "dataloop.lake.s3"))
    assert _lake_imports_a_stage(Import("dataloop.lake.x", "dataloop.quality.hour"))
    assert not _lake_imports_a_stage(Import("dataloop.lake.x", "dataloop.lake.layout"))
    assert Import("dataloop.defs.resources", "dagster") in {
        Import(i.module, i.name) for i in _all_imports()
    }


# -- the lake layout -------------------------------------------------------------------------
def _key_literals(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """String literals in ``path`` that begin with a lake prefix, the literal parts of
    f-strings included (``f"{lake_prefix}raw/"``)."""
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(prefixes)
    ]


def test_no_key_literal_outside_the_layout():
    """dataloop/lake/layout.py owns every key: no other module spells one (``dagster/`` is
    left out: it is also Dagster's tag namespace, and only Dagster writes that zone)."""
    from dataloop.lake.layout import ZONES

    prefixes = tuple(p for z in ZONES if z.name != "dagster" for p in z.prefixes)
    layout = PACKAGE / "lake" / "layout.py"
    found = [
        k
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != layout
        for k in _key_literals(path, prefixes)
    ]
    assert not found, "\n".join(found)
