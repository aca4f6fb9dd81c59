"""Quality in real Dagster runs: the blocking check stops the hour's downstream assets in the
same run, and editing a suite marks exactly the checked hours stale for a backfill."""

from __future__ import annotations

import importlib
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus

from dataloop.defs.ingest.assets import decoded_drives, raw_drive_logs
from dataloop.defs.resources import LakeResource
from dataloop.fleet.uploader import upload_drive
from dataloop.lake import ledger
from dataloop.lake.layout import hour_verdicts_key
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from tests.helpers import commit_raw

REPO = Path(__file__).resolve().parents[1]


def _quality_module() -> SimpleNamespace:
    """The quality definitions as a fresh code location would build them (re-reading the
    suites), snapshotted: a later reload does not change them."""
    import dataloop.defs.quality.assets as module

    module = importlib.reload(module)
    from dataloop.defs.quality.compliance import compliant_drives

    return SimpleNamespace(
        drive_verdicts=module.drive_verdicts,
        hour_fit_for_use=module.hour_fit_for_use,
        approved_drives=module.approved_drives,
        compliant_drives=compliant_drives,
    )


def _run(q, store, hour, instance):
    return dg.materialize(
        [
            raw_drive_logs,
            decoded_drives,
            q.drive_verdicts,
            q.hour_fit_for_use,
            q.approved_drives,
            q.compliant_drives,
        ],
        partition_key=hour,
        resources={"lake": LakeResource(url=str(store.root))},
        instance=instance,
        selection=[decoded_drives, q.drive_verdicts, q.approved_drives, q.compliant_drives],
        raise_on_error=False,
    )


def _arrive_at(store: LocalStore, manifest_key: str, at: datetime) -> str:
    os.utime(store.path(manifest_key), (at.timestamp(), at.timestamp()))
    return at.strftime("%Y-%m-%d-%H:00")


def test_blocking_check_stops_downstream_in_the_same_run(tmp_path, make_log, monkeypatch):
    monkeypatch.delenv("DATALOOP_RULES", raising=False)
    q = _quality_module()
    store = LocalStore(tmp_path / "lake")
    now = datetime.now(UTC).replace(minute=30)
    # Uploads are keyed by the day they start, which is never after they arrive.
    good = upload_drive(store, make_log(drive="ok"), vehicle="veh-1", now=now - timedelta(hours=2))
    good_hour = _arrive_at(store, good.manifest_key, now - timedelta(hours=2))
    garbage = tmp_path / "g.mcap"
    garbage.write_bytes(b"garbage" * 1000)
    bad = commit_raw(
        store,
        garbage,
        vehicle="veh-2",
        drive="g",
        day=(now - timedelta(hours=1)).date().isoformat(),
    )
    bad_hour = _arrive_at(store, bad.manifest, now - timedelta(hours=1))
    with dg.instance_for_test() as instance:
        unfit = _run(q, store, bad_hour, instance)
        assert not unfit.success
        checks = unfit.get_asset_check_evaluations()
        assert [c.passed for c in checks] == [False]
        materialized = {e.asset_key.path[-1] for e in unfit.get_asset_materialization_events()}
        # the blocking check stopped everything downstream of the verdicts
        assert materialized == {"decoded_drives", "drive_verdicts"}
        assert "usable drive" in str(checks[0].metadata["reasons"].value)

        fit = _run(q, store, good_hour, instance)
        assert fit.success
        materialized = {e.asset_key.path[-1] for e in fit.get_asset_materialization_events()}
        assert materialized == {
            "decoded_drives",
            "drive_verdicts",
            "approved_drives",
            "compliant_drives",
        }
    assert ledger.section(store, "veh-1", "ok", ledger.VERDICT)["verdict"] in ("pass", "warn")


def test_suite_edit_marks_checked_hours_stale_and_backfill_reapplies(
    tmp_path, make_log, monkeypatch
):
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "assets", rules)
    monkeypatch.setenv("DATALOOP_RULES", str(rules))
    store = LocalStore(tmp_path / "lake")
    now = datetime.now(UTC).replace(minute=30)
    hours = []
    for i in range(2):
        at = now - timedelta(hours=3 - i)
        up = upload_drive(store, make_log(drive=f"d{i}", seed=i), vehicle="veh-1", now=at)
        hours.append(_arrive_at(store, up.manifest_key, at))
    never_checked = (now - timedelta(hours=5)).strftime("%Y-%m-%d-%H:00")

    def stale(q, instance):
        graph = dg.Definitions(
            assets=[raw_drive_logs, decoded_drives, q.drive_verdicts, q.approved_drives],
            resources={"lake": LakeResource(url=str(store.root))},
        ).resolve_asset_graph()
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
            instance=instance,
            asset_graph=graph,
        )
        resolver = CachingStaleStatusResolver(instance, graph, loading_context=view)
        return {
            h
            for h in [*hours, never_checked]
            if resolver.get_status(q.drive_verdicts.key, h) == StaleStatus.STALE
        }

    with dg.instance_for_test() as instance:
        q = _quality_module()
        for hour in hours:
            assert _run(q, store, hour, instance).success
        assert stale(q, instance) == set()
        verdicts = {h: read_json(store, hour_verdicts_key(h)) for h in hours}
        assert all(v["fit"] for v in verdicts.values())

        # Edit a rule: no drive may exceed 1 m/s. Every checked hour, and only those, is stale.
        suite = rules / "quality" / "vehicle_state.yaml"
        suite.write_text(suite.read_text().replace("max_value: 70}", "max_value: 1}"))
        q2 = _quality_module()
        assert q2.drive_verdicts.code_versions_by_key != q.drive_verdicts.code_versions_by_key
        assert stale(q2, instance) == set(hours)

        # The backfill of the stale hours re-applies the suite.
        for hour in sorted(stale(q2, instance)):
            _run(q2, store, hour, instance)
        assert stale(q2, instance) == set()
        for hour in hours:
            after = read_json(store, hour_verdicts_key(hour))
            assert after["suites_version"] != verdicts[hour]["suites_version"]
            assert {d["verdict"] for d in after["drives"]} == {"quarantine"}
            assert not after["fit"]
    monkeypatch.delenv("DATALOOP_RULES")
    _quality_module()
