"""Backfill after a rule change, through Dagster's own machinery: a suite is tightened, the code
location reloads (as "Reload definitions" does), a backfill over a range of arrival hours is
launched with the UI's GraphQL mutation, and the backfill daemon's iteration submits its runs,
which the default run launcher executes in processes of the workspace.yaml code server.

Exactly the backfilled hours get new verdicts under the new suites' code version; downstream
data versions change only in the hour whose verdicts changed; hours outside the range are
untouched and stay stale, as the UI shows them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from dataloop.lake import ledger
from dataloop.lake.layout import approved_key, hour_verdicts_key
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.quality.suites import load_suites
from tests.helpers import commit_raw, hourly_assets, materialize_hours

REPO = Path(__file__).resolve().parents[1]
LOCATION = "dataloop"
HOURLY = ("decoded_drives", "drive_verdicts", "approved_drives", "compliant_drives")
REAPPLIED = HOURLY[1:]  # what a suite edit re-applies: the verdicts and what reads them
DOWNSTREAM = REAPPLIED[1:]
DEADLINE_S = 120
# Synthetic drives start at 12-25 m/s (by seed) and change speed slowly over 4 s.
SLOW, FAST = (2, 3), (4, 5)  # start at 15.4 / 13.1 m/s, and at 24.3 / 22.5 m/s
TIGHTER_SPEED_LIMIT = 18

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""
STALENESS = """
query ($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      staleStatusByPartition(partitions: $partitions)
      staleCausesByPartition(partitions: $partitions) { category reason }
    }
  }
}
"""


def _arrive(store: LocalStore, log: Path, vehicle: str, drive: str, at: datetime) -> None:
    keys = commit_raw(store, log, vehicle=vehicle, drive=drive, day=at.date().isoformat())
    os.utime(store.path(keys.manifest), (at.timestamp(), at.timestamp()))


def _backfill(ctx, hours: tuple[str, str], title: str) -> list[dg.DagsterRun]:
    """Launch a backfill of the verdicts and their hourly downstream over ``hours`` (first,
    last) as the UI does, and run the backfill daemon's iterations until it completes; returns
    its runs."""
    reply = execute_dagster_graphql(
        ctx.create_request_context(),
        LAUNCH_BACKFILL,
        {
            "params": {
                "title": title,
                # no run config: the implicit asset job runs its steps as DATALOOP_EXECUTOR
                # says (in process by default: a subprocess per step costs more than these)
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": [asset]},
                        "partitions": {"range": {"start": hours[0], "end": hours[1]}},
                    }
                    for asset in REAPPLIED
                ],
            }
        },
    )
    launched = reply.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    instance = ctx.instance
    logger = logging.getLogger("test_backfill")
    deadline = time.monotonic() + DEADLINE_S
    while True:
        errors = [e for e in execute_backfill_iteration(ctx, logger) if e is not None]
        assert not errors, errors[0].to_string()
        backfill = instance.get_backfill(backfill_id)
        if backfill.status != BulkActionStatus.REQUESTED:
            break
        # The daemon submitted runs (the default launcher runs them in subprocesses): wait for
        # them before its next iteration, as it would see them finish.
        runs = instance.get_runs(dg.RunsFilter.for_backfill(backfill_id))
        while not all(r.is_finished for r in runs):
            assert time.monotonic() < deadline, f"backfill {backfill_id} still running"
            time.sleep(0.2)
            runs = instance.get_runs(dg.RunsFilter.for_backfill(backfill_id))
        assert time.monotonic() < deadline, f"backfill {backfill_id} did not complete"
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
    runs = instance.get_runs(dg.RunsFilter.for_backfill(backfill_id))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    return runs


def _latest(instance, asset: str, hour: str):
    """(storage id, code version, data version) of the latest materialization of the hour."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[hour]), limit=1
    ).records
    assert records, f"{asset} {hour} never materialized"
    tags = records[0].asset_materialization.tags
    return records[0].storage_id, tags["dagster/code_version"], tags["dagster/data_version"]


def _staleness(ctx, asset: str, hours: list[str]) -> dict[str, tuple[str, set[str]]]:
    """What the UI shows per hour: stale status and the categories of its causes."""
    reply = execute_dagster_graphql(
        ctx.create_request_context(),
        STALENESS,
        {"key": {"path": [asset]}, "partitions": hours},
    )
    node = reply.data["assetNodeOrError"]
    return {
        hour: (status, {c["category"] for c in causes})
        for hour, status, causes in zip(
            hours, node["staleStatusByPartition"], node["staleCausesByPartition"], strict=True
        )
    }


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster"),
        overrides={
            # submitted runs launch at once (no run-queue daemon in this test)
            "run_coordinator": {
                "module": "dagster._core.run_coordinator",
                "class": "DefaultRunCoordinator",
            },
            "telemetry": {"enabled": False},
        },
    ) as instance:
        yield instance


def test_suite_edit_then_backfill_changes_exactly_the_affected_hours(
    tmp_path, make_log, monkeypatch, instance
):
    # The hourly assets in this process, as the repository's rules define them (a copy's
    # rules until the edit are byte for byte the same: same code versions).
    assets = hourly_assets()
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "assets", rules)
    store = LocalStore(tmp_path / "lake")
    # The code server (and the run processes it starts) read the lake and rules from here.
    monkeypatch.setenv("DATALOOP_RULES", str(rules))
    monkeypatch.setenv("DATALOOP_LAKE", str(store.root))
    monkeypatch.chdir(REPO)

    # Four arrival hours; the middle two are backfilled. Each hour's drive names say whether
    # the tighter limit quarantines them.
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    plan = {  # hours ago -> [(vehicle, drive, seed)]
        5: [("veh-a", "slow-h0", SLOW[0]), ("veh-b", "fast-h0", FAST[0])],
        4: [("veh-a", "slow-h1", SLOW[1])],
        3: [("veh-a", "slow-h2", SLOW[0]), ("veh-b", "fast-h2", FAST[1])],
        2: [("veh-a", "slow-h3", SLOW[1]), ("veh-b", "fast-h3", FAST[0])],
    }
    hours = []
    for ago, drives in plan.items():
        at = now - timedelta(hours=ago)
        for vehicle, drive, seed in drives:
            _arrive(store, make_log(vehicle=vehicle, drive=drive, seed=seed), vehicle, drive, at)
        hours.append(at.strftime("%Y-%m-%d-%H:00"))
    h0, h1, h2, h3 = hours
    fast = {h0: "fast-h0", h2: "fast-h2", h3: "fast-h3"}

    # Every hour materialized under the suites as shipped.
    materialize_hours(store, hours, assets, instance, selection=list(HOURLY))

    target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
    with create_test_daemon_workspace_context(target, instance) as ctx:
        before = {(a, h): _latest(instance, a, h) for a in HOURLY for h in hours}
        old_code = before["drive_verdicts", h0][1]
        assert old_code.endswith(load_suites(rules).version)
        for hour in hours:
            assert read_json(store, hour_verdicts_key(hour))["fit"]
        for drive in fast.values():
            assert ledger.section(store, "veh-b", drive, ledger.VERDICT)["verdict"] != "quarantine"
        assert {s for s, _ in _staleness(ctx, "drive_verdicts", hours).values()} == {"FRESH"}

        # Tighten a rule: no drive faster than 18 m/s. Reload the code location, as the UI's
        # "Reload definitions" does: its code server re-reads the suites.
        suite = rules / "quality" / "vehicle_state.yaml"
        suite.write_text(
            suite.read_text().replace("max_value: 70}", f"max_value: {TIGHTER_SPEED_LIMIT}}}")
        )
        ctx.reload_code_location(LOCATION)
        new_code = f"{old_code.rsplit('suites-', 1)[0]}suites-{load_suites(rules).version}"
        assert new_code != old_code
        stale = _staleness(ctx, "drive_verdicts", hours)
        assert stale == {h: ("STALE", {"CODE"}) for h in hours}

        # Backfill the middle two hours only.
        runs = _backfill(ctx, (h1, h2), "re-apply vehicle_state speed_range")
        assert {r.tags["dagster/partition"] for r in runs} == {h1, h2}
        after = {(a, h): _latest(instance, a, h) for a in HOURLY for h in hours}

        # What the UI shows now: the backfilled hours are fresh, the others still stale on code.
        assert _staleness(ctx, "drive_verdicts", hours) == {
            h0: ("STALE", {"CODE"}),
            h1: ("FRESH", set()),
            h2: ("FRESH", set()),
            h3: ("STALE", {"CODE"}),
        }
        for asset in DOWNSTREAM:
            assert _staleness(ctx, asset, [h1, h2]) == {h: ("FRESH", set()) for h in (h1, h2)}

    # Outside the range: nothing materialized again, the verdicts in the lake as they were.
    for asset in HOURLY:
        for hour in (h0, h3):
            assert after[asset, hour] == before[asset, hour], (asset, hour)
    for hour in (h0, h3):
        assert ledger.section(store, "veh-b", fast[hour], ledger.VERDICT)["verdict"] != "quarantine"

    # Inside: new verdicts under the new code version, a new data version (the suites' hash is
    # part of it); decoding was not asked for again.
    for hour in (h1, h2):
        assert after["decoded_drives", hour] == before["decoded_drives", hour]
        storage_id, code, data = after["drive_verdicts", hour]
        assert storage_id > before["drive_verdicts", hour][0]
        assert code == new_code
        assert data != before["drive_verdicts", hour][2]
    assert ledger.section(store, "veh-b", "fast-h2", ledger.VERDICT)["verdict"] == "quarantine"
    assert ledger.section(store, "veh-a", "slow-h2", ledger.VERDICT)["verdict"] != "quarantine"
    assert ledger.section(store, "veh-a", "slow-h1", ledger.VERDICT)["verdict"] != "quarantine"
    assert read_json(store, hour_verdicts_key(h2))["fit"]  # one of two: within policy

    # Downstream: materialized again in both hours, but a new data version only where a verdict
    # changed (h2 lost its fast drive; h1's drives all still pass).
    for asset in DOWNSTREAM:
        assert after[asset, h1][0] > before[asset, h1][0]
        assert after[asset, h1][2] == before[asset, h1][2], asset
        assert after[asset, h2][0] > before[asset, h2][0]
        assert after[asset, h2][2] != before[asset, h2][2], asset
    assert read_json(store, approved_key(h2))["drives"] == [["veh-a", "slow-h2"]]
