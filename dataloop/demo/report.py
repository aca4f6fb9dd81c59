"""What the demo shows: one row per iteration, a PNG of the three series that say whether
driving made the model better, and the same plot on the ``loop_report`` asset in the UI."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from dataloop.demo.loop import Iteration

LOOP_REPORT = "loop_report"
"""The asset the demo reports its plot and table on (``dataloop/defs/loop``)."""


def rows(iterations: list[Iteration]) -> list[dict]:
    return [
        {
            "it": it.index,
            "fleet drove": "+".join(m[:8] for m in it.fleet_models) or "-",
            "km": round(it.km, 1),
            "dis/1k km": round(it.disengagements_per_1000km),
            "dataset (clips)": f"{it.dataset or '-'} ({it.dataset_clips})",
            "new model": (it.model or "-")[:8],
            "score": "-" if it.score is None else f"{it.score:.3f}",
            "gate": {None: "-", True: "pass", False: "fail"}[it.gate_passed],
            "releases": "; ".join(it.releases) or "-",
            "production": it.production[:8],
        }
        for it in iterations
    ]


def plot_png(iterations: list[Iteration]) -> bytes:
    """Closed-loop score, disengagements per 1000 km and dataset size per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [it.index for it in iterations]
    series = [
        ("closed-loop score (stock scenarios)", [it.score for it in iterations], "tab:blue"),
        (
            "disengagements / 1000 km",
            [it.disengagements_per_1000km for it in iterations],
            "tab:red",
        ),
        ("dataset size (clips)", [it.dataset_clips for it in iterations], "tab:green"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), dpi=90)
    for ax, (title, ys, colour) in zip(axes, series, strict=True):
        points = [(a, b) for a, b in zip(x, ys, strict=True) if b is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=colour)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_xticks(x)
    axes[0].set_ylim(0, 1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def markdown_table(table: list[dict]) -> str:
    if not table:
        return ""
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in table]
    return "\n".join(lines)


def publish(iterations: list[Iteration], png_path: Path, instance) -> None:
    """Write the PNG and report it, with the table, as a materialization of ``loop_report``."""
    import dagster as dg

    png = plot_png(iterations)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.write_bytes(png)
    last = iterations[-1]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=LOOP_REPORT,
            metadata={
                "plot": dg.MetadataValue.md(
                    f"![loop](data:image/png;base64,{base64.b64encode(png).decode()})"
                ),
                "iterations": dg.MetadataValue.md(markdown_table(rows(iterations))),
                "iterations_run": dg.MetadataValue.int(len(iterations)),
                "last_score": dg.MetadataValue.float(last.score or 0.0),
                "dataset_clips": dg.MetadataValue.int(last.dataset_clips),
                "production": dg.MetadataValue.text(last.production),
                "png": dg.MetadataValue.path(str(png_path)),
            },
        )
    )
