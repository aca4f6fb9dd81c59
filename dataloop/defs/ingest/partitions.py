"""Arrival-hour partitions: a year is 8,760 partitions, whatever the fleet size."""

import dagster as dg

arrival_hours = dg.HourlyPartitionsDefinition(
    start_date="2026-01-01-00:00",
    timezone="UTC",
    end_offset=1,  # the hour in progress is a partition too: uploads land in it
)
