"""Expectations run by great-expectations 1.x on pandas: one validation per table for the
whole hour (GX's fixed cost is per validation), failures attributed to drives through GX's
unexpected index columns. great_expectations is imported here only: it takes seconds."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pandas as pd

from dataloop.quality.suites import Expectation

_ID = ["vehicle_id", "drive_id"]


@cache
def _batch_definition(table: str):
    """One in-memory context and one dataframe asset per table, made once per process:
    GX saves its project config on every data-source change, which costs more than a
    small validation."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = _context(gx, ProgressBarsConfig)
    asset = context.data_sources.add_pandas(f"lake-{table}").add_dataframe_asset(table)
    return asset.add_batch_definition_whole_dataframe("hour")


@cache
def _context(gx, progress_bars):
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars(globally=False)
    return context


def _class_name(gx_type: str) -> str:
    return "".join(part.capitalize() for part in gx_type.split("_"))


def run_gx(table: str, frame: pd.DataFrame, expectations: list[Expectation]):
    """Yield (expectation, Counter of unexpected rows per (vehicle, drive), observed)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=table)
    for e in expectations:
        cls = getattr(gxe, _class_name(e.type))
        suite.add_expectation(cls(**e.kwargs, mostly=1.0, meta={"id": e.key}))
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": _ID,
            "return_unexpected_index_query": False,
        },
    )
    by_id = {e.key: e for e in expectations}
    for r in result.results:
        e = by_id[r.expectation_config.meta["id"]]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"{e.key}: {r.exception_info.get('exception_message')}")
        rows = r.result.get("unexpected_index_list") or []
        counts = Counter((row["vehicle_id"], row["drive_id"]) for row in rows)
        yield e, counts, r.result.get("observed_value")
