"""Write requirements.lock: every package (name==version) that ``pip install -e '.[test]'``
resolves to from the package indexes today, transitive ones included.

    python scripts/lock.py             # after changing pyproject.toml: keeps today's pins
    python scripts/lock.py --upgrade   # the newest releases the ranges admit

pip resolves without installing (``--dry-run --ignore-installed --report``), so the lock does
not depend on what the running environment holds. tests/test_dependencies.py checks that the
lock satisfies pyproject.toml, is closed under the packages' own requirements, and is what the
tests run on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# The application's lock: the whole tree the tests run on (CI installs with `-c`).
#   pip install -c requirements.lock -e '.[test]'
# Regenerate after changing pyproject.toml: python scripts/lock.py
# torch is the CPU build (+cpu); elsewhere than this machine's index, add
#   --extra-index-url https://download.pytorch.org/whl/cpu
"""


LOCK = ROOT / "requirements.lock"


def resolve(keep: bool) -> dict[str, str]:
    """Name -> version of the resolved tree; ``keep``: today's lock constrains it (a package
    that is new or whose pin no longer fits gets the newest release that does)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        constraints = ["-c", str(LOCK)] if keep and LOCK.exists() else []
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
             "--report", str(report), *constraints, "-e", f"{ROOT}[test]"],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    return {
        i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
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
