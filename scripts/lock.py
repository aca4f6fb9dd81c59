"""Write requirements.lock: every package (name==version) that ``pip install -e '.[test]'``
resolves to from the package indexes today, transitive ones included.

    python scripts/lock.py             # after changing pyproject.toml: keeps today's pins
    python scripts/lock.py --upgrade   # the newest releases the ranges admit

pip resolves without installing (``--dry-run --ignore-installed --report``), so the lock does
not depend on what the running environment holds. A conflict among the kept pins (a package
that now needs a newer release of another) is pip's ResolutionImpossible, which names them:
re-run with ``--upgrade``. tests/test_dependencies.py checks that the
lock satisfies pyproject.toml, is closed under the packages' own requirements, and is what the
tests run on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# The application's lock: the whole tree the tests run on (CI installs with `-c`).
#   pip install -c requirements.lock -e '.[test]'
# Regenerate after changing pyproject.toml: python scripts/lock.py
# Pins carry no local label: torch==2.13.0 is the CPU build (2.13.0+cpu) where the index has it
# (this project's machines; elsewhere --extra-index-url https://download.pytorch.org/whl/cpu).
"""


LOCK = ROOT / "requirements.lock"


def _kept_pins() -> list[str]:
    """Today's pins that pyproject.toml's ranges still admit (a pin a range now rejects goes,
    so that package gets the newest release that fits)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    ranges = {canonicalize_name(r.name): r.specifier for r in map(Requirement, declared)}
    kept = []
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            if ranges.get(canonicalize_name(name), SpecifierSet()).contains(version, True):
                kept.append(line)
    return kept


def resolve(keep: bool) -> dict[str, str]:
    """Name -> version of the resolved tree; ``keep``: today's pins constrain it."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        constraints = []
        if keep and LOCK.exists():
            (Path(tmp) / "keep.txt").write_text("\n".join(_kept_pins()) + "\n")
            constraints = ["-c", str(Path(tmp) / "keep.txt")]
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
             "--report", str(report), *constraints, "-e", f"{ROOT}[test]"],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"]).public
        for i in installs
        if i["metadata"]["name"] != "dataloop"
    }


def main() -> None:
    pins = resolve(keep="--upgrade" not in sys.argv[1:])
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    LOCK.write_text(HEADER + "\n".join(lines) + "\n")
    print(f"requirements.lock: {len(lines)} packages")


if __name__ == "__main__":
    main()
