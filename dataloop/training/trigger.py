"""The training trigger policy (assets/training/trigger.yaml), decided from lake state: the
latest dataset version against the dataset the current model was trained on."""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from dataloop.curation import datasets as D
from dataloop.lake.store import ObjectStore
from dataloop.policy.bundle import latest
from dataloop.release.rollout import rolling

ROLLOUT_HOLD = "a release is rolling out: training waits for its outcome"


def _clips(store: ObjectStore, version: str | None) -> list[dict]:
    record = D.find_version(store, version) if version else None
    if record is None:
        return []
    return D.read_manifest(store, record).select(["clip_id", "scenario"]).to_pylist()


def decide(store: ObjectStore, policy: dict[str, Any]) -> tuple[dict | None, list[str]]:
    """(the latest training dataset's pointer, the reasons to train on it now); no reasons:
    don't."""
    pointer = D.latest_training_dataset(store)
    if pointer is None:
        return None, []
    model = latest(store)
    if model and model["dataset_version"] == pointer["version"]:
        return pointer, []
    new = _clips(store, pointer["version"])
    if len(new) < int(policy["min_dataset_clips"]):
        return pointer, []
    old = _clips(store, model["dataset_version"] if model else None)
    reasons = []
    added = len({c["clip_id"] for c in new} - {c["clip_id"] for c in old})
    if added >= int(policy["min_new_clips"]):
        reasons.append(f"new_clips: +{added} clips over the current model's dataset")
    before = Counter(c["scenario"] for c in old)
    after = Counter(c["scenario"] for c in new)
    for scenario in sorted(after):
        if after[scenario] < int(policy["min_category_clips"]):
            continue
        growth = 100.0 * (after[scenario] - before[scenario]) / max(before[scenario], 1)
        if growth >= float(policy["category_growth_pct"]):
            reasons.append(
                f"category_growth: {scenario} {before[scenario]} -> {after[scenario]} clips "
                f"(+{growth:.0f}%)"
            )
    return pointer, reasons


class Decision(NamedTuple):
    """What the trigger policy says now: the latest dataset pointer, the policy's reasons to
    train on it, and why training is held anyway (a rollout), if it is."""

    pointer: dict | None
    reasons: list[str]
    held: str | None = None

    @property
    def train(self) -> bool:
        return bool(self.reasons) and self.held is None

    def summary(self) -> str:
        """One line for the UI and the model's metadata."""
        if self.held:
            return f"held: {self.held}"
        return "; ".join(self.reasons) if self.reasons else "the trigger policy does not ask"


def training_decision(store: ObjectStore, policy: dict[str, Any]) -> Decision:
    """The one training decision: ``decide``, held while a release rolls out (when the
    policy's ``hold_during_rollout``, default on). Everything that asks "train now?" calls it."""
    pointer, reasons = decide(store, policy)
    held = ROLLOUT_HOLD if policy.get("hold_during_rollout", True) and rolling(store) else None
    return Decision(pointer, reasons, held)
