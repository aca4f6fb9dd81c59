"""The documentation a newcomer reads: a short README that starts with the two commands, and the
mkdocs site under docs/, built with ``--strict`` so that no link, anchor or page can rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 200
VENV = "python3.11 -m venv .venv && .venv/bin/pip install -q -c requirements.lock"
RUN = f"{VENV} -e . && .venv/bin/dataloop demo"
TEST = f"{VENV} -e '.[test]' && .venv/bin/pytest"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, re.S | re.M)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc (mkdocs) and GitHub both give a plain heading."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text))


def _anchors(page: Path) -> set[str]:
    text = page.read_text()
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    blocks = _fenced_blocks(text)
    assert [b.strip() for b in blocks[:2]] == [RUN, TEST]
    # CI's contract: .ci/run runs exactly the README's test command.
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == TEST


def test_readme_links_resolve():
    """Every relative link of the README names a file of the repository, and an anchor on a
    docs page names one of its headings."""
    targets = LINK.findall(README.read_text())
    docs_links = [t for t in targets if t.startswith("docs/")]
    assert len(docs_links) >= 20  # the README points into docs/, page by page
    for target in targets:
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = REPO / path
        assert file.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(file), f"README links to {target}: no such heading"


def test_every_stage_has_its_page():
    pages = {p.name for p in DOCS.glob("*.md")}
    stages = [
        "index.md",
        "ingest.md",
        "drive-log-contract.md",
        "quality.md",
        "compliance.md",
        "labelling.md",
        "curation.md",
        "datasets.md",
        "search.md",
        "training.md",
        "simulation.md",
        "release.md",
        "lineage.md",
        "scaling.md",
        "reliability.md",
        "deployment.md",
        "configuration.md",
        "benchmarks.md",
        "dependencies.md",
    ]
    assert not set(stages) - pages


def test_mkdocs_builds_strict_and_offline(tmp_path):
    """``mkdocs build --strict``: a broken link or anchor, a page missing from the nav or a
    missing include fails the build. Nothing is fetched: no web fonts, no network plugins."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (site / "index.html").read_text()
    assert 'class="mermaid"' in index  # the README's loop diagram, included
    assert "fonts.googleapis.com" not in index
    dependencies = (site / "dependencies" / "index.html").read_text()
    assert "great-expectations" in dependencies  # the README's list, included
    assert (site / "drive-log-contract" / "index.html").is_file()
