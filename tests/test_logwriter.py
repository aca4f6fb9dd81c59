"""Drive logs are valid, indexed MCAP in the contract, readable by the mcap library."""

from __future__ import annotations

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from dataloop.fleet import contract
from dataloop.fleet.logwriter import DriveLogWriter


def test_log_has_schemas_indexes_and_summary(make_log):
    path = make_log(seconds=3.0)
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert reader.get_header().profile == contract.PROFILE
        topics = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        assert topics == {c.topic: c.schema for c in contract.CHANNELS}
        assert all(s.encoding == "protobuf" and s.data for s in summary.schemas.values())
        assert summary.chunk_indexes, "chunk indexes make time-range reads cheap"
        counts = {
            summary.channels[cid].topic: n
            for cid, n in summary.statistics.channel_message_counts.items()
        }
        # rates: 3 s at 10/100/50 Hz
        assert counts[contract.CAMERA.topic] == 30
        assert counts[contract.IMU.topic] == 300
        assert counts[contract.VEHICLE_STATE.topic] == 150
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert meta[contract.DRIVE_METADATA]["vehicle"] == "veh-1"

        # Indexed read of a one-second window decodes with the embedded schemas.
        start = summary.statistics.message_start_time + 1_000_000_000
        end = start + 1_000_000_000
        window = list(
            reader.iter_decoded_messages(
                topics=[contract.IMU.topic, contract.CAMERA.topic],
                starting_at=start,
                ending_before=end,
            )
        )
        imu = [p for _, c, _, p in window if c.topic == contract.IMU.topic]
        images = [p for _, c, _, p in window if c.topic == contract.CAMERA.topic]
        assert len(imu) == 100 and len(images) == 10
        assert all(start <= m.log_time < end for _, _, m, _ in window)
        assert abs(imu[0].accel_z - 9.81) < 1e-9
        assert images[0].format == "jpeg" and images[0].data[:2] == b"\xff\xd8"


def test_writer_refuses_ids_that_escape(tmp_path):
    import pytest

    from dataloop.lake.layout import InvalidId

    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(InvalidId):
            DriveLogWriter(tmp_path / "x.mcap", vehicle=bad, drive="d")
