"""Curation's automation conditions on real materializations of a small lake, evaluated by
``curation_automation`` itself (the code the daemon's sensor iteration runs): a recent day is
re-mined when its hours were updated, days outside the lookback and unchanged days are not;
the dataset is rebuilt after a scenario index update, never while a day is being mined."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from dataloop.definitions import defs as load_defs
from dataloop.defs.curation.assets import clip_embeddings, scenario_index, training_dataset
from dataloop.defs.curation.automation import curation_automation, lookback_days
from dataloop.defs.resources import LakeResource
from dataloop.lake.layout import utc_hour_key
from dataloop.lake.local import LocalStore
from tests.helpers import commit_raw, hourly_assets, materialize_hours, pipes_client

ENTERED, RELEASE = threading.Event(), threading.Event()


class HeldLake(LakeResource):
    """The lake, opened only once the test releases it: the run stays in progress until then."""

    def store(self):
        ENTERED.set()
        assert RELEASE.wait(120)
        return super().store()


@pytest.fixture(scope="module")
def repository():
    return load_defs().get_repository_def()


HALF_PAST = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
ARRIVALS = {back: HALF_PAST - timedelta(days=back, hours=1) for back in (0, 1, 5)}
"""A drive arrives in an hour of today (the previous one: always past), of yesterday and
of five days ago (outside the default lookback of 2 days)."""
HOURS = {back: utc_hour_key(at) for back, at in ARRIVALS.items()}
DAYS = {back: hour[:10] for back, hour in HOURS.items()}


@pytest.fixture
def lake(tmp_path, make_log):
    store = LocalStore(tmp_path / "lake")
    for back, at in ARRIVALS.items():
        drive = f"d-{back}"
        keys = commit_raw(
            store, make_log(drive=drive), vehicle="veh-1", drive=drive, day=DAYS[back]
        )
        os.utime(store.path(keys.manifest), (at.timestamp(), at.timestamp()))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield store, instance


class Ticks:
    """Successive evaluations of ``curation_automation``, each from the last one's cursor."""

    def __init__(self, repository, instance):
        self.repository, self.instance, self.cursor = repository, instance, None

    def __call__(self) -> set[tuple[str | None, frozenset[str]]]:
        """(partition, assets) of each run the tick requests."""
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, repository_def=self.repository
        ) as context:
            result = curation_automation(context)
        self.cursor = result.cursor
        for request in result.run_requests:
            assert request.tags["dataloop/stage"] == "curation"
        return {
            (r.partition_key, frozenset(k.to_user_string() for k in r.asset_selection))
            for r in result.run_requests
        }


def _mine(store, instance, day: str, lake: LakeResource | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*hourly_assets(), scenario_index, clip_embeddings, training_dataset],
        partition_key=day,
        instance=instance,
        resources={"lake": lake or LakeResource(url=str(store.root)), **pipes_client()},
        selection=[scenario_index],
    )


def test_curation_requests_the_changed_recent_days_and_then_the_dataset(lake, repository):
    store, instance = lake
    assert lookback_days() == 2
    today, yesterday, old = HOURS[0], HOURS[1], HOURS[5]
    day = {h: h[:10] for h in (today, yesterday, old)}
    assets = hourly_assets()
    tick = Ticks(repository, instance)
    assert tick() == set()  # the first evaluation only starts the cursor

    materialize_hours(store, [yesterday], assets, instance)
    mined = frozenset({"scenario_index", "clip_embeddings"})
    assert tick() == {(day[yesterday], mined)}  # the day's two assets in one run
    assert tick() == set()  # requested once: yesterday is handled

    materialize_hours(store, [today, old], assets, instance)
    # today changed; five days ago is outside the lookback; yesterday did not change
    assert tick() == {(day[today], mined)}
    assert tick() == set()

    assert _mine(store, instance, day[today]).success
    # the dataset follows the new index; the day's search index reads it too
    assert tick() == {
        (None, frozenset({"training_dataset"})),
        (day[today], frozenset({"clip_embeddings"})),
    }
    assert tick() == set()

    assert _mine(store, instance, day[today]).success  # an update the dataset has not seen
    ENTERED.clear(), RELEASE.clear()
    held = threading.Thread(
        target=lambda: _mine(store, instance, day[yesterday], HeldLake(url=str(store.root)))
    )
    held.start()
    try:
        assert ENTERED.wait(120)  # yesterday is being mined: the dataset waits for it
        assert tick() == {(day[today], frozenset({"clip_embeddings"}))}
    finally:
        RELEASE.set()
        held.join(120)
    assert tick() == {
        (None, frozenset({"training_dataset"})),
        (day[yesterday], frozenset({"clip_embeddings"})),
    }
