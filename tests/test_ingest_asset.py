"""materialize() of the ingest asset on logs written by the writer."""

from __future__ import annotations

import dagster as dg

from dataloop.defs.ingest.assets import decoded_drives, raw_drive_logs
from dataloop.defs.resources import LakeResource
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.hour import arrival_hours, upload_days
from tests.helpers import commit_raw


def test_materialize_ingest_partition(store, make_log, tmp_path):
    upload_drive(store, make_log(drive="a", seed=1), vehicle="veh-1")
    upload_drive(store, make_log(vehicle="veh-2", drive="b", seed=2), vehicle="veh-2")
    garbage = tmp_path / "g.mcap"
    garbage.write_bytes(b"not an mcap file at all" * 100)
    commit_raw(store, garbage, vehicle="veh-3", drive="g")
    hours = arrival_hours(store, upload_days(store))
    with dg.instance_for_test() as instance:
        results = []
        for hour in hours:
            result = dg.materialize(
                [raw_drive_logs, decoded_drives],
                partition_key=hour,
                resources={"lake": LakeResource(url=store.url)},
                instance=instance,
                selection=[decoded_drives],
            )
            assert result.success
            results.append(result)
        mats = [e.materialization for r in results for e in r.get_asset_materialization_events()]
        meta = {k: sum(m.metadata[k].value for m in mats) for k in ("drives", "quarantined")}
        assert meta == {"drives": 3, "quarantined": 1}
        table = [row for m in mats for row in m.metadata["per_drive"].records]
        assert {r.data["drive"]: r.data["status"] for r in table} == {
            "a": "ingested",
            "b": "ingested",
            "g": "quarantined",
        }
        assert all(m.tags.get("dagster/data_version") for m in mats)

        # Materializing again skips every drive and keeps the data version.
        again = dg.materialize(
            [raw_drive_logs, decoded_drives],
            partition_key=hours[-1],
            resources={"lake": LakeResource(url=store.url)},
            instance=instance,
            selection=[decoded_drives],
        )
        mat = again.get_asset_materialization_events()[0].materialization
        assert mat.metadata["newly_decoded"].value == 0
        assert mat.tags["dagster/data_version"] == mats[-1].tags["dagster/data_version"]
