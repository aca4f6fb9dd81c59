"""The report the UI shows: a per-category markdown table and a plot of score distributions
(candidate vs production), as a PNG data URI inside markdown."""

from __future__ import annotations

import base64
import io

from dataloop.simulation.gate import Verdict


def category_table(verdict: Verdict, candidate: str, production: str) -> str:
    lines = [
        f"| category | n | {candidate[:12]} | {production[:12]} | delta | p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in verdict.categories:
        lines.append(
            f"| {c['category']} | {c['scenarios']} | {c['candidate']:.3f} | {c['production']:.3f}"
            f" | {c['delta']:+.3f} | {c['p_value']:.4f} | {c['verdict']} |"
        )
    return "\n".join(lines)


def score_plot(rows: list[dict], candidate: str, production: str) -> str:
    """Markdown with an embedded box plot of scores per category for both models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted({r["category"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(categories)), 3), dpi=80)
    for offset, (model, color) in enumerate(((candidate, "tab:blue"), (production, "tab:gray"))):
        data = [
            [r["score"] for r in rows if r["model_version"] == model and r["category"] == c]
            for c in categories
        ]
        ax.boxplot(
            data,
            positions=[i * 3 + offset for i in range(len(categories))],
            widths=0.8,
            patch_artist=True,
            boxprops={"facecolor": color},
            label=model[:12],
        )
    ax.set_xticks([i * 3 + 0.5 for i in range(len(categories))], categories, rotation=30)
    ax.set_ylabel("score")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"![scores](data:image/png;base64,{data})"
