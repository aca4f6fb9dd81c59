"""Releases, the director and the staged rollout (``assets/release/rollout.yaml``).

A release is a number N: TUF targets ``driving/release-N/<file>`` (the gated model bundle
plus ``release_notes.json``). The director assigns each vehicle release N when its cohort
(sha256 of its id, mod 100: ``lake.layout.cohort``) is below the current stage's percentage,
else the previous release, and *publishes* every cohort's assignment as signed TUF metadata
(a delegated targets role per cohort, see ``repository``) whenever it changes: a rollout
starts, advances, completes or halts and rolls back. The car reads its cohort's assignment
through its TUF client (``fleet.ota``); it never runs the director.

Each evaluation reads fleet telemetry (``telemetry/date=/vehicle=/``) not counted at an
earlier stage and decides ``wait``, ``advance``, ``complete`` or ``halt``; a halt publishes a
NEW release pointing at the previous model (a higher number, never a TUF rollback).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataloop import rules
from dataloop.lake import layout as L
from dataloop.lake.pointers import read_json, update_json, write_json
from dataloop.lake.store import ObjectNotFound, ObjectStore
from dataloop.lineage.graph import record_node
from dataloop.policy.bundle import FILES
from dataloop.policy.observation import BASELINE
from dataloop.rules import rules_dir
from dataloop.rules import schemas as S


def load_policy(path: Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """``release/rollout.yaml`` in the rules folder (``$DATALOOP_RULES`` or assets/),
    validated (``RulesError``: file, line)."""
    return rules.load(path or rules_dir() / "release" / "rollout.yaml", S.Rollout, data)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def history(store: ObjectStore) -> list[dict]:
    return (read_json(store, L.RELEASE_HISTORY_KEY) or {"releases": []})["releases"]


def state(store: ObjectStore) -> dict | None:
    return read_json(store, L.ROLLOUT_KEY)


def rolling(store: ObjectStore) -> dict | None:
    """The one answer to "is a release rolling?": the running rollout's state (neither
    complete nor halted), else None."""
    st = state(store)
    return st if st is not None and st["status"] == "rolling" else None


def unreleased_candidate(store: ObjectStore, gate: dict | None) -> str | None:
    """The one answer to "release this candidate?": the candidate of ``gate`` (the latest
    gate result, ``simulation.gate.gate_result``) when the gate passed it and no release
    (rollbacks aside) has shipped it yet; else None. A running rollout makes it wait
    (``rolling``), it does not make it released."""
    gate = gate or {}
    candidate = gate.get("candidate")
    if not gate.get("passed") or not candidate:
        return None
    released = {r["model_version"] for r in history(store) if r.get("kind") != "rollback"}
    return None if candidate in released else candidate


def production(store: ObjectStore) -> dict:
    """The production state (model and release), the one reader of it; before the first
    release, the fleet's baseline driver."""
    return read_json(store, L.PRODUCTION_KEY) or {"model_version": BASELINE, "release": None}


def production_version(store: ObjectStore) -> str:
    """The production model version (the gate's reference), or the baseline driver."""
    return production(store).get("model_version") or BASELINE


def publish_release(store: ObjectStore, repo, model_version: str, notes: dict) -> int:
    """Sign and publish a new release of ``model_version``; returns its number."""
    number = max((r["release"] for r in history(store)), default=0) + 1
    files: dict[str, bytes] = {}
    if model_version != BASELINE:
        for name in FILES:
            try:
                files[name] = store.get(L.bundle_key(model_version, name))
            except ObjectNotFound as err:
                raise LookupError(f"no model bundle {model_version!r} in the lake") from err
    body = {
        "kind": "release",
        **notes,
        "release": number,
        "model_version": model_version,
        "files": sorted(files),
        "created": _now(),
    }
    files["release_notes.json"] = json.dumps(body, indent=1, sort_keys=True).encode()
    repo.publish({L.release_target(number, n): d for n, d in files.items()})
    update_json(
        store,
        L.RELEASE_HISTORY_KEY,
        lambda h: {"releases": [*(h or {"releases": []})["releases"], body]},
    )
    record_node(store, "release", str(number), [{"kind": "model", "version": model_version}])
    return number


def release_notes(store: ObjectStore, model_version: str, gate: dict | None) -> dict:
    """Lineage summary: the model's dataset and the gate report that passed it."""
    card = {}
    with contextlib.suppress(ObjectNotFound):
        card = json.loads(store.get(L.bundle_key(model_version, "model_card.json")))
    gate = gate or {}
    return {
        "kind": "release",
        "dataset_version": (card.get("dataset") or {}).get("version"),
        "gate": {
            "passed": gate.get("passed"),
            "suite": gate.get("suite"),
            "gate_version": gate.get("gate"),
            "production": gate.get("production"),
            "summary": gate.get("summary"),
        },
    }


def start_rollout(store: ObjectStore, repo, model_version: str, notes: dict) -> dict:
    """Publish ``model_version`` and start its rollout at the first stage."""
    prod = production(store)
    number = publish_release(store, repo, model_version, notes)
    value = {
        "release": number,
        "model_version": model_version,
        "previous_release": prod.get("release"),
        "previous_model": prod["model_version"],
        "stage": 0,
        "status": "rolling",
        "counted": [],
        "decisions": [],
        "started": _now(),
    }
    write_json(store, L.ROLLOUT_KEY, value)
    publish_assignments(store, repo)
    return value


def _assign(st: dict | None, prod: dict, pct: int, cohort: int) -> dict:
    if st is None:
        return {"release": prod.get("release"), "model_version": prod["model_version"]}
    if st["status"] in ("rolling", "complete") and cohort < pct:
        return {"release": st["release"], "model_version": st["model_version"]}
    if st["status"] == "rolled_back":
        return {"release": st["rollback_release"], "model_version": st["previous_model"]}
    return {"release": st["previous_release"], "model_version": st["previous_model"]}


def assign(store: ObjectStore, vehicle: str, policy: dict | None = None) -> dict:
    """The director: which release (and model) ``vehicle`` should run now."""
    return {
        k: v
        for k, v in assignments(store, policy)[L.cohort(vehicle)].items()
        if k in ("release", "model_version")
    }


def assignments(store: ObjectStore, policy: dict | None = None) -> dict[int, dict]:
    """The director: every cohort's assignment now. It says what to run and nothing else, so
    a cohort's signed version moves exactly when what its vehicles run does: a start moves
    the first stage's cohorts, an advance the next ones, a halt every cohort (onto the
    rollback release), a completion none (they all run it already)."""
    st = state(store)
    prod = production(store)
    pct = (policy or load_policy())["stages"][st["stage"]] if st is not None else 0
    return {
        c: {"kind": "assignment", "cohort": c, **_assign(st, prod, pct, c)}
        for c in range(L.COHORTS)
    }


def publish_assignments(store: ObjectStore, repo, policy: dict | None = None) -> dict[int, int]:
    """Sign every cohort's assignment that changed (or nears its expiry) into the TUF
    repository; returns the cohorts re-signed, with their new role versions."""
    bodies = {
        c: json.dumps(a, sort_keys=True, separators=(",", ":")).encode()
        for c, a in assignments(store, policy).items()
    }
    return repo.publish_assignments(bodies)


def _telemetry(store: ObjectStore) -> list[tuple[str, dict]]:
    out = []
    for info in store.list(L.TELEMETRY_REPORTS):
        if info.key.endswith(".json"):
            out.append((info.key, json.loads(store.get(info.key))))
    return out


def _rates(records: list[dict]) -> dict[str, float]:
    km = sum(r.get("km", 0.0) for r in records)
    dis = sum(r.get("disengagements", 0) for r in records)
    errors = sum(r.get("errors", 0) for r in records)
    return {
        "vehicles": len({r.get("vehicle") for r in records}),
        "km": round(km, 3),
        "disengagements": dis,
        "errors": errors,
        "disengagements_per_1000km": round(1000 * dis / km, 3) if km else 0.0,
        "errors_per_1000km": round(1000 * errors / km, 3) if km else 0.0,
    }


def evaluate(store: ObjectStore, repo, policy: dict | None = None) -> dict | None:
    """One rollout decision from telemetry; returns the decision (None: no rollout running)."""
    policy = policy or load_policy()
    st = rolling(store)
    if st is None:
        return None
    records = _telemetry(store)
    counted = set(st["counted"])
    cohort = [(k, r) for k, r in records if r.get("model_version") == st["model_version"]]
    fresh = [r for k, r in cohort if k not in counted]
    previous = [r for _, r in records if r.get("model_version") == st["previous_model"]]
    new, old = _rates(fresh), _rates(previous)
    stages = policy["stages"]
    limit = max(
        old["disengagements_per_1000km"] * (1 + policy["max_disengagement_increase"]),
        old["disengagements_per_1000km"] + policy.get("min_disengagement_slack_per_1000km", 0),
    )
    numbers = {
        "stage_percent": stages[st["stage"]],
        "cohort": new,
        "previous_release": old,
        "disengagement_limit_per_1000km": round(limit, 3),
        "max_errors_per_1000km": policy["max_errors_per_1000km"],
        "min_km": policy["min_km_per_stage"],
    }
    reasons = []
    if new["km"] > 0 and new["errors_per_1000km"] > policy["max_errors_per_1000km"]:
        reasons.append(
            f"errors {new['errors_per_1000km']}/1000 km > {policy['max_errors_per_1000km']}"
        )
    judged = min(new["km"], old["km"]) >= policy["min_km_per_stage"]
    if judged and new["disengagements_per_1000km"] > limit:
        reasons.append(
            f"disengagements {new['disengagements_per_1000km']}/1000 km > limit {limit:.3f}"
        )
    if reasons:
        decision = "halt"
    elif new["km"] < policy["min_km_per_stage"]:
        decision = "wait"
        reasons.append(f"cohort drove {new['km']} km < {policy['min_km_per_stage']} km")
    elif old["km"] < policy["min_km_per_stage"]:
        decision = "wait"  # nothing to compare against yet (the rest of the fleet reports it)
        reasons.append(f"previous release drove {old['km']} km < {policy['min_km_per_stage']} km")
    elif st["stage"] + 1 < len(stages):
        decision = "advance"
        reasons.append(f"stage {stages[st['stage']]} % healthy → {stages[st['stage'] + 1]} %")
    else:
        decision = "complete"
        reasons.append("100 % healthy: promoted to production")
    record = {
        "at": _now(),
        "release": st["release"],
        "decision": decision,
        "reasons": reasons,
        **numbers,
    }
    if decision == "wait":
        st["last_check"] = record
        write_json(store, L.ROLLOUT_KEY, st)
        return record
    st["decisions"].append(record)
    st.pop("last_check", None)
    if decision == "advance":
        st["stage"] += 1
        st["counted"] = sorted(counted | {k for k, _ in cohort})
    elif decision == "complete":
        st["status"] = "complete"
        write_json(
            store,
            L.PRODUCTION_KEY,
            {"model_version": st["model_version"], "release": st["release"], "at": _now()},
        )
    else:
        st["status"] = "halted"
        write_json(store, L.ROLLOUT_KEY, st)
        notes = {
            "kind": "rollback",
            "rolls_back": st["release"],
            "reasons": reasons,
        }
        number = publish_release(store, repo, st["previous_model"], notes)
        st["status"] = "rolled_back"
        st["rollback_release"] = number
        record["rollback_release"] = number
        write_json(
            store,
            L.PRODUCTION_KEY,
            {"model_version": st["previous_model"], "release": number, "at": _now()},
        )
    write_json(store, L.ROLLOUT_KEY, st)
    if st["status"] != "rolling":  # the rollout is over: its decisions stay in the history
        _record_rollout(store, st)
    publish_assignments(store, repo, policy)  # the cohorts that moved: new signed versions
    return record


def _record_rollout(store: ObjectStore, st: dict) -> None:
    outcome = {"status": st["status"], "decisions": st["decisions"]}

    def attach(h: dict | None) -> dict:
        releases = (h or {"releases": []})["releases"]
        return {
            "releases": [
                {**r, "rollout": outcome} if r["release"] == st["release"] else r for r in releases
            ]
        }

    update_json(store, L.RELEASE_HISTORY_KEY, attach)


def status(store: ObjectStore) -> dict:
    """Everything ``dataloop release status`` shows."""
    st = state(store)
    policy = load_policy()
    out: dict[str, Any] = {
        "production": production(store),
        "rollout": None,
        "history": history(store),
    }
    if st is not None:
        out["rollout"] = {k: v for k, v in st.items() if k != "counted"} | {
            "stage_percent": policy["stages"][st["stage"]]
        }
    return out
