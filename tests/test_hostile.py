"""Hostile uploads beyond tests/test_bad_logs.py (decompression bombs, absurd lengths, huge
or deeply nested JSON, manifests with wrong types or giant fields, int64-extreme times): each
is quarantined with its reason (a channel no adapter maps is only listed), and the process
ingesting all of them stays in bounded memory (peak RSS measured by the kernel, in a process
of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.hostile import BOMB_BYTES, build

REPO = Path(__file__).resolve().parents[1]
PEAK_RSS_BOUND_MIB = 256
"""Far under what inflating one bomb (512 MiB) or reading the giant manifest would take."""


def test_hostile_uploads_are_quarantined_in_bounded_memory(tmp_path):
    cases = build(tmp_path / "corpus")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faults.hostile",
            str(tmp_path / "corpus"),
            str(tmp_path / "lake"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["warm-up", *(c.name for c in cases)]
    assert rows[0]["status"] == "ingested", "a good upload next to them is ingested"
    for row in rows[1:]:
        if row["expected"] == "ingested":  # harmless once nothing parses it: listed
            assert row["status"] == "ingested" and row["unmapped"], row
            continue
        assert row["status"] == "quarantined", row
        assert (row["name"], row["code"]) == (row["name"], row["expected"]), row
        assert row["detail"], row
    peak = max(r["peak_rss_mib"] for r in rows)
    assert peak < PEAK_RSS_BOUND_MIB < BOMB_BYTES / 2**20, rows
