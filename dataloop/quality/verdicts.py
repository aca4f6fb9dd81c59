"""From check results to a verdict per drive (pass, warn, quarantine) and the hour's fitness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataloop.lake.ledger import PASS, QUARANTINE, WARN


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    family: str
    severity: str
    engine: str
    vehicle: str
    drive: str
    unexpected: int
    total: int
    observed: Any = None
    mostly: float = 1.0

    @property
    def failed(self) -> bool:
        return self.unexpected > (1.0 - self.mostly) * max(self.total, 1)


def drive_verdict(results: list[CheckResult]) -> dict[str, Any]:
    failures = [r for r in results if r.failed]
    verdict = (
        QUARANTINE
        if any(r.severity == QUARANTINE for r in failures)
        else WARN
        if failures
        else PASS
    )
    return {
        "verdict": verdict,
        "checks": len(results),
        "failures": [
            {
                "expectation": r.expectation,
                "family": r.family,
                "severity": r.severity,
                "engine": r.engine,
                "unexpected": r.unexpected,
                "total": r.total,
                "observed": None if r.observed is None else _plain(r.observed),
            }
            for r in sorted(failures, key=lambda r: (r.severity != QUARANTINE, r.expectation))
        ],
    }


def _plain(value: Any) -> Any:
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return str(value)


def hour_fitness(
    verdicts: list[dict[str, Any]], policy: dict[str, Any], drifted: list[str]
) -> tuple[bool, list[str]]:
    """Whether the hour as a whole is fit for downstream use, and why not."""
    reasons = []
    n = len(verdicts)
    quarantined = sum(v["verdict"] == QUARANTINE for v in verdicts)
    usable = n - quarantined
    if drifted:
        reasons.append(f"schema drift in {', '.join(sorted(drifted))}")
    if usable < policy.get("min_usable_drives", 1):
        reasons.append(f"{usable} usable drive(s), fewer than {policy.get('min_usable_drives', 1)}")
    rate = quarantined / n if n else 0.0
    if rate > policy.get("max_quarantine_rate", 1.0):
        reasons.append(
            f"quarantine rate {rate:.0%} above the policy's {policy['max_quarantine_rate']:.0%}"
        )
    return not reasons, reasons
