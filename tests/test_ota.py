"""OTA release (#8): the signed TUF repository in the lake, the vehicle client's refusal of
each classic attack, and the staged rollout (advance to 100 %; halt and roll back)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from tuf.api import exceptions as tx

from dataloop.fleet.ota import OtaClient
from dataloop.lake import layout as L
from dataloop.lake.layout import PRODUCTION_KEY
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.policy.bundle import write_bundle
from dataloop.release import repository as R
from dataloop.release import rollout as RO


@pytest.fixture
def env(tmp_path):
    R.init_keys(tmp_path / "keys")
    store = LocalStore(tmp_path / "lake")
    repo = R.Repository(store, R.load_signers(tmp_path / "keys"))
    repo.init()
    return store, repo, tmp_path


def _model(store, seed: int) -> str:
    w = {"w": np.full((2, 2), float(seed))}
    card = {"dataset": {"version": f"ds-{seed}", "seq": seed}}
    return write_bundle(store, w, {}, {"seed": seed}, card)


def _client(store, repo, tmp_path, name="veh-0001"):
    return OtaClient(store, tmp_path / name, trusted_root=repo.root_bytes())


def _overwrite(store, key, data: bytes):
    store.path(key).write_bytes(data)


def _target_key(repo, path):
    info = repo.latest("targets").signed.targets[path]
    return L.tuf_target_key(path, info.hashes["sha256"])


def test_repository_layout_and_roles(env):
    store, repo, tmp = env
    model = _model(store, 1)
    n = RO.publish_release(store, repo, model, {"kind": "release"})
    root = repo.root().signed
    assert root.consistent_snapshot and root.roles["root"].threshold >= 2
    assert len(root.roles["root"].keyids) == 2
    for role in ("targets", "snapshot", "timestamp"):
        assert repo.latest(role).signed.expires > repo.latest(role).signed.expires - timedelta(1)
    keys = [i.key for i in store.list("releases/")]
    assert any(k.endswith(".targets.json") for k in keys)
    # private keys never reach the lake
    for info in store.list(""):
        assert b"PRIVATE KEY" not in store.get(info.key)
    current = _client(store, repo, tmp).install(n)
    assert current == {
        "release": n,
        "model_version": model,
        "path": str(tmp / "veh-0001" / "installed" / f"release-{n}"),
    }
    assert _client(store, repo, tmp).policy().model_version == model


def test_tampered_target_refused(env):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    key = _target_key(repo, f"driving/release-{n}/weights.bin")
    data = bytearray(store.get(key))
    data[0] ^= 1
    _overwrite(store, key, bytes(data))
    client = _client(store, repo, tmp)
    with pytest.raises(tx.LengthOrHashMismatchError):
        client.install(n)
    assert client.running() is None


def test_tampered_metadata_refused(env):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    version = repo.latest("targets").signed.version
    key = L.tuf_metadata_key(f"{version}.targets.json")
    doc = json.loads(store.get(key))
    path = f"driving/release-{n}/weights.bin"
    doc["signed"]["targets"][path]["length"] += 1
    _overwrite(store, key, json.dumps(doc).encode())
    with pytest.raises(tx.UnsignedMetadataError):
        _client(store, repo, tmp).install(n)


def test_expired_timestamp_refused(env, monkeypatch):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    monkeypatch.setitem(R.EXPIRY, "timestamp", timedelta(seconds=-60))
    repo.refresh_timestamp()  # a stale (frozen) timestamp is all the vehicle is shown
    with pytest.raises(tx.ExpiredMetadataError):
        _client(store, repo, tmp).install(n)


def test_rollback_attack_refused(env):
    store, repo, tmp = env
    old_ts = store.get(L.tuf_metadata_key("timestamp.json"))
    n = RO.publish_release(store, repo, _model(store, 1), {})
    client = _client(store, repo, tmp)
    client.install(n)
    _overwrite(store, L.tuf_metadata_key("timestamp.json"), old_ts)  # replay older, valid metadata
    with pytest.raises(tx.BadVersionNumberError):
        client.install(n)
    assert client.running()["release"] == n


def test_mix_and_match_refused(env):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    v = repo.latest("targets").signed.version
    # snapshot says targets v; serve an older, validly signed targets under that name
    _overwrite(
        store,
        L.tuf_metadata_key(f"{v}.targets.json"),
        store.get(L.tuf_metadata_key("1.targets.json")),
    )
    with pytest.raises(tx.BadVersionNumberError):
        _client(store, repo, tmp).install(n)


def test_wrong_signing_key_refused(env):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    R.init_keys(tmp / "attacker")
    evil = R.Repository(store, R.load_signers(tmp / "attacker"))
    evil.refresh_timestamp()  # re-signed by a key root does not trust
    with pytest.raises(tx.UnsignedMetadataError):
        _client(store, repo, tmp).install(n)


def test_oversized_target_refused(env):
    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    key = _target_key(repo, f"driving/release-{n}/weights.bin")
    _overwrite(store, key, store.get(key) + b"\0" * (1 << 20))  # endless data
    with pytest.raises(tx.DownloadLengthMismatchError):
        _client(store, repo, tmp).install(n)


def _telemetry(store, vehicle: str, model: str, km: float, dis: int, errors: int = 0, i=0):
    body = {
        "vehicle": vehicle,
        "model_version": model,
        "km": km,
        "drive_seconds": 600.0,
        "disengagements": dis,
        "disengagements_per_1000km": 1000 * dis / km,
        "errors": errors,
        "faults_injected": 0,
        "drives": [],
        "from": "2026-01-01T00:00:00+00:00",
        "to": "2026-01-01T00:10:00+00:00",
    }
    key = f"telemetry/date=2026-01-01/vehicle={vehicle}/{model[:8]}-{i:04d}.json"
    store.put(key, json.dumps(body).encode())


def _seed_previous(store, model: str):
    for v in range(5):
        _telemetry(store, f"veh-{v:04d}", model, km=100.0, dis=2)  # 20 / 1000 km


def test_good_model_reaches_100_percent(env):
    store, repo, tmp = env
    policy = RO.load_policy()
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    st = RO.start_rollout(store, repo, model, RO.release_notes(store, model, {"passed": True}))
    assert RO.evaluate(store, repo, policy)["decision"] == "wait"
    decisions = []
    for i, _pct in enumerate(policy["stages"]):
        _telemetry(store, f"veh-{i:04d}", model, km=policy["min_km_per_stage"], dis=1, i=i)
        decisions.append(RO.evaluate(store, repo, policy)["decision"])
    assert decisions == ["advance"] * (len(policy["stages"]) - 1) + ["complete"]
    assert read_json(store, PRODUCTION_KEY)["model_version"] == model
    assert RO.assign(store, "veh-0042", policy)["release"] == st["release"]
    notes = RO.history(store)[0]
    assert notes["dataset_version"] == "ds-1" and notes["gate"]["passed"] is True


def test_regressing_model_halts_and_rolls_back(env):
    store, repo, tmp = env
    policy = RO.load_policy()
    _seed_previous(store, RO.BASELINE)
    good = _model(store, 1)
    RO.start_rollout(store, repo, good, {})
    for i in range(len(policy["stages"])):
        _telemetry(store, f"veh-{i:04d}", good, km=policy["min_km_per_stage"], dis=1, i=i)
        RO.evaluate(store, repo, policy)
    assert RO.state(store)["status"] == "complete"
    bad = _model(store, 2)
    st = RO.start_rollout(store, repo, bad, {})
    _telemetry(store, "veh-0001", bad, km=policy["min_km_per_stage"], dis=10)
    decision = RO.evaluate(store, repo, policy)
    assert decision["decision"] == "halt" and decision["stage_percent"] == policy["stages"][0]
    rb = decision["rollback_release"]
    assert rb > st["release"]
    assert read_json(store, PRODUCTION_KEY) | {"at": None} == {
        "model_version": good,
        "release": rb,
        "at": None,
    }
    assert RO.history(store)[-1]["model_version"] == good
    # the vehicle installs the rollback release: a newer TUF version, the previous model
    client = _client(store, repo, tmp)
    assert client.install(RO.assign(store, "veh-0001", policy)["release"])["model_version"] == good
    out = RO.status(store)
    assert out["rollout"]["status"] == "rolled_back"
    assert [d["decision"] for d in out["rollout"]["decisions"]] == ["halt"]
    # every finished rollout stays in the history with its decisions, the next one's too
    outcomes = {h["release"]: h.get("rollout") for h in out["history"]}
    stages = len(policy["stages"])
    assert [d["decision"] for d in outcomes[1]["decisions"]] == ["advance"] * (stages - 1) + [
        "complete"
    ]
    assert outcomes[st["release"]]["status"] == "rolled_back"
    assert outcomes[rb] is None  # a rollback release has no rollout of its own


def test_release_asset_publishes_the_gated_candidate_and_decides(env, monkeypatch):
    import dagster as dg

    from dataloop.defs.release.assets import release
    from dataloop.defs.resources import LakeResource
    from dataloop.lake.layout import GATE_RESULT_KEY
    from dataloop.lake.pointers import write_json

    store, repo, tmp = env
    monkeypatch.setenv(R.KEYS_ENV, str(tmp / "keys"))
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    write_json(store, GATE_RESULT_KEY, {"candidate": model, "passed": True, "suite": "s1"})
    lake = LakeResource(url=str(tmp / "lake"))
    result = dg.materialize([release], resources={"lake": lake})
    meta = result.asset_materializations_for_node("release")[0].metadata
    assert meta["status"].value == "rolling" and meta["stage_percent"].value == 1
    assert meta["decision"].data["decision"] == "wait"
    _telemetry(store, "veh-0001", model, km=RO.load_policy()["min_km_per_stage"], dis=1)
    result = dg.materialize([release], resources={"lake": lake})
    meta = result.asset_materializations_for_node("release")[0].metadata
    assert meta["decision"].data["decision"] == "advance"
    assert "advance" in meta["decisions"].value


def test_cli_keys_init_and_status(env, monkeypatch, capsys):
    from dataloop.cli import main

    store, repo, tmp = env
    assert main(["release", "keys", "init", str(tmp / "k2"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["written"]) == 5
    assert (tmp / "k2" / "timestamp.pem").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("DATALOOP_LAKE", str(tmp / "lake"))
    _seed_previous(store, RO.BASELINE)
    bad = _model(store, 3)
    RO.start_rollout(store, repo, bad, {})
    _telemetry(store, "veh-0001", bad, km=60.0, dis=1, errors=5)
    assert RO.evaluate(store, repo)["decision"] == "halt"
    assert main(["release", "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rollout"]["status"] == "rolled_back"
    assert [h["kind"] for h in out["history"]] == ["release", "rollback"]
    assert main(["release", "status"]) == 0
    text = capsys.readouterr().out
    assert "rolled_back" in text and "halt" in text


def test_fleet_vehicle_drives_what_the_director_assigns(env):
    from dataloop.fleet.ota import vehicle_policy

    store, repo, tmp = env
    assert vehicle_policy(store, "veh-0007", tmp / "v7").model_version == RO.BASELINE
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    RO.start_rollout(store, repo, model, {})
    policy = RO.load_policy()
    for i in range(len(policy["stages"])):
        _telemetry(store, f"veh-{i:04d}", model, km=policy["min_km_per_stage"], dis=1, i=i)
        RO.evaluate(store, repo, policy)
    assert vehicle_policy(store, "veh-0007", tmp / "v7").model_version == model
    assert json.loads((tmp / "v7" / "current.json").read_text())["model_version"] == model


def test_release_sensor_requests_runs(env):
    import dagster as dg

    from dataloop.defs.release.sensors import release_rollout
    from dataloop.defs.resources import LakeResource
    from dataloop.lake.layout import GATE_RESULT_KEY
    from dataloop.lake.pointers import write_json

    store, repo, tmp = env

    def tick():
        lake = LakeResource(url=str(tmp / "lake"))
        with dg.build_sensor_context(resources={"lake": lake}) as ctx:
            return release_rollout(ctx)

    assert isinstance(tick(), dg.SkipReason)
    model = _model(store, 1)
    write_json(store, GATE_RESULT_KEY, {"candidate": model, "passed": True})
    assert tick().run_key == f"release:new:{model}"
    RO.start_rollout(store, repo, model, {})
    first = tick().run_key
    assert first.startswith("release:rollout:1:")
    _telemetry(store, "veh-0001", model, km=10.0, dis=0)
    assert tick().run_key != first


def test_a_candidate_is_released_once_when_its_gate_passed(env):
    """``unreleased_candidate``: the one "release this candidate?" of the asset and sensor."""
    store, repo, _ = env
    model = _model(store, 1)
    assert RO.unreleased_candidate(store, None) is None  # no gate result yet
    assert RO.unreleased_candidate(store, {"candidate": model, "passed": False}) is None
    assert RO.unreleased_candidate(store, {"candidate": None, "passed": True}) is None
    assert RO.unreleased_candidate(store, {"candidate": model, "passed": True}) == model
    RO.start_rollout(store, repo, model, {})
    assert RO.unreleased_candidate(store, {"candidate": model, "passed": True}) is None
    RO.publish_release(store, repo, RO.BASELINE, {"kind": "rollback"})  # rollbacks don't count
    baseline = {"candidate": RO.BASELINE, "passed": True}
    assert RO.unreleased_candidate(store, baseline) == RO.BASELINE


def test_publish_and_install_on_both_backends(store, tmp_path):
    R.init_keys(tmp_path / "keys")
    repo = R.Repository(store, R.load_signers(tmp_path / "keys"))
    model = _model(store, 1)
    n = RO.publish_release(store, repo, model, {})
    repo.refresh_timestamp()
    assert _client(store, repo, tmp_path).install(n)["model_version"] == model


def test_online_host_needs_only_the_timestamp_key(env, monkeypatch):
    store, repo, tmp = env
    monkeypatch.delenv(R.KEYS_ENV, raising=False)
    pem = (tmp / "keys" / "timestamp.pem").read_text()
    monkeypatch.setenv(R.key_env("timestamp.pem"), pem)
    online = R.Repository(store, R.load_signers())
    assert online.refresh_timestamp() == repo.latest("timestamp").signed.version
    with pytest.raises(R.KeysMissing):
        online.publish({"driving/release-9/x": b"x"})
    monkeypatch.delenv(R.key_env("timestamp.pem"))
    with pytest.raises(R.KeysMissing):
        R.load_signers()


def test_key_rotation_after_a_compromise(env):
    from securesystemslib.signer import CryptoSigner

    store, repo, tmp = env
    n = RO.publish_release(store, repo, _model(store, 1), {})
    client = _client(store, repo, tmp)
    client.install(n)
    stolen = repo.signers["timestamp"]
    assert repo.rotate("timestamp", [CryptoSigner.generate_ed25519()]) == 2
    assert client.install(n)["release"] == n  # walks root 1 → 2, accepts the new key
    thief = R.Repository(store, {"timestamp": stolen})
    thief.refresh_timestamp()  # the stolen key no longer counts
    with pytest.raises(tx.UnsignedMetadataError):
        client.install(n)


def test_root_rotation_is_followed_by_the_vehicle(env):
    from securesystemslib.signer import CryptoSigner

    store, repo, tmp = env
    client = _client(store, repo, tmp)  # provisioned with root v1
    new_roots = [CryptoSigner.generate_ed25519() for _ in range(2)]
    assert repo.rotate("root", new_roots) == 2
    n = RO.publish_release(store, repo, _model(store, 1), {})
    assert client.install(n)["release"] == n
    assert (
        json.loads((tmp / "veh-0001" / "tuf" / "root.json").read_bytes())["signed"]["version"] == 2
    )


def test_no_judgement_without_the_previous_release_numbers(env):
    store, repo, tmp = env
    model = _model(store, 1)
    RO.start_rollout(store, repo, model, {})
    _telemetry(store, "veh-0001", model, km=100.0, dis=5)
    decision = RO.evaluate(store, repo)
    assert decision["decision"] == "wait" and "previous release" in decision["reasons"][0]
    _seed_previous(store, RO.BASELINE)
    assert RO.evaluate(store, repo)["decision"] == "halt"  # 50 vs 20 per 1000 km


# -- the director's signed assignments (#22 item 3): the car reads, the cloud decides -----------
def _vehicle_in(cohorts) -> str:
    """A vehicle id whose cohort is in ``cohorts``."""
    return next(v for i in range(10_000) if L.cohort(v := f"veh-{i:04d}") in cohorts)


def _roll_to_production(store, repo, model, policy):
    RO.start_rollout(store, repo, model, {})
    for i in range(len(policy["stages"])):
        _telemetry(store, f"veh-{i:04d}", model, km=policy["min_km_per_stage"], dis=1, i=i)
        RO.evaluate(store, repo, policy)
    assert RO.state(store)["status"] == "complete"


def _running(store, repo, tmp, vehicle) -> tuple[OtaClient, dict]:
    """A car that has read its assignment and installed release 1 (production)."""
    from dataloop.fleet.ota import vehicle_policy

    policy = RO.load_policy()
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    _roll_to_production(store, repo, model, policy)
    assert vehicle_policy(store, vehicle, tmp / vehicle).model_version == model
    client = _client(store, repo, tmp, vehicle)
    assert client.running()["release"] == 1
    return client, {"model": model, "policy": policy}


def _cohort_file(repo, number) -> str:
    return L.tuf_metadata_key(
        f"{repo.assignment(number).signed.version}.{L.cohort_role(number)}.json"
    )


def _keeps_running(store, tmp, vehicle, model, error, match):
    """The car refuses (``error`` behind a clear AssignmentRefused) and drives on ``model``."""
    from dataloop.fleet.ota import AssignmentRefused, vehicle_policy

    client = OtaClient(store, tmp / vehicle)
    with pytest.raises(AssignmentRefused, match=match) as refused:
        client.assignment(vehicle)
    if error is not None:
        assert isinstance(refused.value.__cause__, error)
    assert vehicle_policy(store, vehicle, tmp / vehicle).model_version == model
    assert client.running()["model_version"] == model


def test_the_director_publishes_every_cohorts_assignment_signed(env):
    store, repo, tmp = env
    policy = RO.load_policy()
    stages = policy["stages"]
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    st = RO.start_rollout(store, repo, model, {})
    # top-level targets (offline key) delegates each cohort's one path to the online key
    delegations = repo.latest("targets").signed.delegations
    assert len(delegations.roles) == L.COHORTS
    online = set(repo.root().signed.roles["timestamp"].keyids)
    for number in range(L.COHORTS):
        role = delegations.roles[L.cohort_role(number)]
        assert set(role.keyids) == online and role.paths == [L.assignment_target(number)]
    first = {c: repo.assignment(c).signed for c in range(L.COHORTS)}
    inside, outside = _vehicle_in(range(stages[0])), _vehicle_in(range(stages[1], 100))
    moved = _vehicle_in(range(stages[0], stages[1]))
    car = _client(store, repo, tmp, inside)
    assert car.assignment(inside) == {
        "kind": "assignment",
        "cohort": L.cohort(inside),
        "release": st["release"],
        "model_version": model,
    }
    assert car.assignment(outside)["model_version"] == RO.BASELINE
    assert car.assignment(moved)["model_version"] == RO.BASELINE
    assert RO.publish_assignments(store, repo, policy) == {}  # unchanged: nothing re-signed
    # an advance re-signs the cohorts it moves (a new version, a new expiry), only those
    _telemetry(store, "veh-0001", model, km=policy["min_km_per_stage"], dis=1)
    assert RO.evaluate(store, repo, policy)["decision"] == "advance"
    for number in range(L.COHORTS):
        now, before = repo.assignment(number).signed, first[number]
        if stages[0] <= number < stages[1]:
            assert now.version == before.version + 1 and now.expires >= before.expires
        else:
            assert now == before
    assert car.assignment(moved)["release"] == st["release"]
    # a halt and its rollback release: every cohort moves onto the rollback, re-signed
    _telemetry(store, "veh-0002", model, km=policy["min_km_per_stage"], dis=50, i=1)
    decision = RO.evaluate(store, repo, policy)
    assert decision["decision"] == "halt"
    for vehicle in (inside, outside, moved):
        assert car.assignment(vehicle)["release"] == decision["rollback_release"]
    assert repo.assignment(L.cohort(outside)).signed.version == first[0].version + 1


def test_an_assignment_signed_by_a_wrong_key_is_refused(env):
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, TargetFile, Targets

    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    client, seen = _running(store, repo, tmp, vehicle)
    RO.start_rollout(store, repo, _model(store, 2), {})  # new versions: the car fetches them
    number = L.cohort(vehicle)
    real = repo.assignment(number).signed
    path = L.assignment_target(number)
    body = json.dumps({"kind": "assignment", "cohort": number, "release": 2}).encode()
    store.put(L.tuf_target_key(path, R.sha256(body)), body)
    forged = Metadata(
        Targets(
            version=real.version,
            expires=real.expires,
            targets={path: TargetFile.from_data(path, body, ["sha256"])},
        )
    )
    forged.sign(CryptoSigner.generate_ed25519())
    _overwrite(store, _cohort_file(repo, number), forged.to_bytes())
    _keeps_running(store, tmp, vehicle, seen["model"], tx.UnsignedMetadataError, "refused")


def test_a_tampered_assignment_is_refused(env):
    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    _, seen = _running(store, repo, tmp, vehicle)
    RO.start_rollout(store, repo, _model(store, 2), {})
    number = L.cohort(vehicle)
    key = _cohort_file(repo, number)
    signed = store.get(key)
    doc = json.loads(signed)
    doc["signed"]["targets"][L.assignment_target(number)]["length"] += 1  # bytes, not re-signed
    _overwrite(store, key, json.dumps(doc).encode())
    _keeps_running(store, tmp, vehicle, seen["model"], tx.UnsignedMetadataError, "refused")
    _overwrite(store, key, signed)  # the role intact, the assignment file itself altered
    info = repo.assignment(number).signed.targets[L.assignment_target(number)]
    target = L.tuf_target_key(info.path, info.hashes["sha256"])
    body = store.get(target)
    assert b'"release":2}' in body
    _overwrite(store, target, body.replace(b'"release":2}', b'"release":1}'))  # same length
    _keeps_running(store, tmp, vehicle, seen["model"], tx.LengthOrHashMismatchError, "refused")


def test_a_stale_assignment_is_refused(env, monkeypatch):
    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    _, seen = _running(store, repo, tmp, vehicle)
    monkeypatch.setitem(R.EXPIRY, "assignment", timedelta(seconds=-60))
    RO.start_rollout(store, repo, _model(store, 2), {})  # signed already expired: frozen
    assert (
        repo.assignment(L.cohort(vehicle)).signed.expires < repo.latest("timestamp").signed.expires
    )
    _keeps_running(store, tmp, vehicle, seen["model"], tx.ExpiredMetadataError, "Expired")
    monkeypatch.setitem(R.EXPIRY, "assignment", timedelta(days=7))
    assert list(RO.publish_assignments(store, repo)) == [0]  # the expired one: re-signed
    assert OtaClient(store, tmp / vehicle).assignment(vehicle)["release"] == 2


def test_an_older_assignment_is_refused(env):
    from tuf.api.metadata import MetaFile

    store, repo, tmp = env
    vehicle = _vehicle_in(range(50, 100))  # moved at the last stage: two versions
    client, seen = _running(store, repo, tmp, vehicle)
    number = L.cohort(vehicle)
    role = L.cohort_role(number)
    older = repo.assignment(number).signed.version - 1
    # a snapshot (validly signed: a compromised online host) that points the cohort back at
    # its previous, validly signed assignment: TUF's rollback protection refuses it
    snap = repo.latest("snapshot")
    snap.signed.meta[f"{role}.json"] = MetaFile(version=older)
    snap.signed.version += 1
    store.put(
        L.tuf_metadata_key(f"{snap.signed.version}.snapshot.json"), repo._sign(snap, "snapshot")
    )
    repo.refresh_timestamp(snap.signed.version)
    _keeps_running(store, tmp, vehicle, seen["model"], tx.BadVersionNumberError, "refused")


def test_an_assignment_to_an_older_release_is_refused(env):
    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    client, seen = _running(store, repo, tmp, vehicle)
    RO.publish_release(store, repo, _model(store, 2), {})  # release 2, then the car runs it
    body = {"kind": "assignment", "cohort": L.cohort(vehicle), "release": 2}
    model2 = RO.history(store)[-1]["model_version"]
    repo.publish_assignments(
        {L.cohort(vehicle): json.dumps(body | {"model_version": model2}).encode()}
    )
    assert client.assignment(vehicle)["release"] == 2
    client.install(2, model2)
    # a validly signed, fresh assignment back to release 1 (a director gone wrong, or its key
    # stolen): a rollback is always a new, higher release, so the car refuses an older one
    repo.publish_assignments(
        {
            L.cohort(vehicle): json.dumps(
                body | {"release": 1, "model_version": seen["model"]}
            ).encode()
        }
    )
    _keeps_running(store, tmp, vehicle, model2, None, "older than release 2")


def test_an_assignment_that_relabels_a_release_is_refused(env):
    """The online key can point a cohort at a release the offline key signed, never at a
    model it did not: the release's signed notes must name the assigned model, and a release
    the offline key never signed is not installed."""
    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    client, seen = _running(store, repo, tmp, vehicle)
    RO.publish_release(store, repo, _model(store, 2), {})
    body = {"kind": "assignment", "cohort": L.cohort(vehicle), "release": 2}
    repo.publish_assignments(
        {L.cohort(vehicle): json.dumps(body | {"model_version": "evil"}).encode()}
    )
    from dataloop.fleet.ota import AssignmentRefused, vehicle_policy

    with pytest.raises(AssignmentRefused, match="not the assigned evil"):
        client.install(2, "evil")
    assert vehicle_policy(store, vehicle, tmp / vehicle).model_version == seen["model"]
    assert client.running()["release"] == 1
    body |= {"release": 9, "model_version": seen["model"]}  # a release never signed
    repo.publish_assignments({L.cohort(vehicle): json.dumps(body).encode()})
    with pytest.raises(LookupError, match="release 9 has no signed target"):
        client.install(9, seen["model"])
    assert vehicle_policy(store, vehicle, tmp / vehicle).model_version == seen["model"]
    assert client.running()["release"] == 1


def test_rotating_the_online_key_re_delegates_the_assignments(env):
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata

    store, repo, tmp = env
    vehicle = _vehicle_in({0})  # the first stage's cohort
    client, seen = _running(store, repo, tmp, vehicle)
    number = L.cohort(vehicle)
    before = repo.assignment(number).signed.version
    stolen = repo.signers["timestamp"]
    repo.rotate("timestamp", [CryptoSigner.generate_ed25519()])
    assert repo.assignment(number).signed.version == before + 1  # re-signed with the new key
    assert client.assignment(vehicle)["release"] == 1  # walks root 1 → 2, follows the key
    md = Metadata.from_bytes(store.get(_cohort_file(repo, number)))
    md.sign(stolen[0])  # re-signed by the stolen key: no longer delegated
    _overwrite(store, _cohort_file(repo, number), md.to_bytes())
    fresh = _client(store, repo, tmp / "fresh", vehicle)  # one that has not read it yet
    from dataloop.fleet.ota import AssignmentRefused

    with pytest.raises(AssignmentRefused) as refused:
        fresh.assignment(vehicle)
    assert isinstance(refused.value.__cause__, tx.UnsignedMetadataError)
    assert client.assignment(vehicle)["release"] == 1  # the car that read it keeps its own


def test_the_online_host_re_assigns_cohorts_without_the_offline_key(env):
    """Why a delegated role: once top-level targets (offline key) has delegated the cohorts,
    a rollout decision re-signs assignments with the online keys alone."""
    store, repo, tmp = env
    policy = RO.load_policy()
    online = R.Repository(store, {k: repo.signers[k] for k in ("snapshot", "timestamp")})
    with pytest.raises(R.KeysMissing, match="delegate"):  # the first delegation needs it
        RO.publish_assignments(store, online, policy)
    _seed_previous(store, RO.BASELINE)
    model = _model(store, 1)
    RO.start_rollout(store, repo, model, {})
    targets = repo.latest("targets").signed.version
    _telemetry(store, "veh-0001", model, km=policy["min_km_per_stage"], dis=1)
    assert RO.evaluate(store, online, policy)["decision"] == "advance"
    assert repo.latest("targets").signed.version == targets  # top-level targets untouched
    moved = _vehicle_in(range(policy["stages"][0], policy["stages"][1]))
    assert _client(store, repo, tmp, moved).assignment(moved)["model_version"] == model
