"""Arrival-day partitions of curation: the scenario index of a day reads its 24 hours."""

import dagster as dg

arrival_days = dg.DailyPartitionsDefinition(
    start_date="2026-01-01",
    timezone="UTC",
    end_offset=1,  # today is a partition too: its hours arrive during the day
)
