"""The OTA repository: a TUF repository in the lake, built with python-tuf's Metadata API.

Layout (consistent snapshots)::

    releases/tuf/metadata/N.root.json   root, threshold 2 over two offline keys
    releases/tuf/metadata/N.targets.json
    releases/tuf/metadata/N.snapshot.json
    releases/tuf/metadata/timestamp.json  the only mutable file, signed by the online key
    releases/tuf/metadata/N.cohort-07.json  the director's assignment of cohort 07
    releases/tuf/targets/<path>/<sha256>.<name>

**What each vehicle runs is signed too (the director's assignments).** Top-level targets (the
offline release key) delegates one targets role per rollout cohort, ``cohort-00`` ...
``cohort-99``, each allowed to sign exactly one path, ``assignments/cohort-NN.json``: a small
JSON that names the release (and model) the cohort's vehicles run. The car computes its
cohort from its own id (``lake.layout.cohort``), asks its TUF updater for that one path and so
verifies the assignment like any target: signature and threshold of the delegated role, its
version against the snapshot (no rollback), its expiry (no freeze), the file's length and
sha256. What the car refuses beyond TUF: ``dataloop.fleet.ota``.

Why a delegated role per cohort rather than custom fields in top-level targets:

- *Key separation.* The director re-assigns cohorts at every rollout decision, from the
  release step, which holds only online keys in production; top-level targets is signed by
  the offline release key and changes only when a release is published. The delegation lets
  the online key (the timestamp key, ``ASSIGNMENT_KEYS``: a second key on the same host would
  add a file, not a barrier) sign assignments and nothing else: it can point a cohort at a
  release the offline key signed, never at a model it did not, because the car installs only
  targets of top-level targets and checks that the release notes name the assigned model.
- *Cost per car and per decision.* A car fetches its own cohort's role (a few hundred bytes),
  not the whole fleet's assignment table; a decision re-signs only the cohorts whose
  assignment changed, and each cohort's version moves only when its own assignment does.
- *Cohorts, not vehicles.* The director assigns by cohort (a stage of p % is cohorts below
  p), so 100 roles cover any fleet size and the cloud needs no list of vehicles.

Private keys come from a folder (``$DATALOOP_TUF_KEYS_DIR``, PEM files made by
``dataloop release keys init``); they are never written to the lake nor logged. Only the
public keys travel, inside root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from dataloop.lake.layout import (
    COHORTS,
    assignment_target,
    cohort_role,
    tuf_metadata_key,
    tuf_target_key,
)
from dataloop.lake.store import ObjectExists, ObjectNotFound, ObjectStore

KEYS_ENV = "DATALOOP_TUF_KEYS_DIR"
ROOT_THRESHOLD = 2
KEY_FILES = {
    "root": ["root-1.pem", "root-2.pem"],  # offline
    "targets": ["targets.pem"],  # offline (release signing)
    "snapshot": ["snapshot.pem"],
    "timestamp": ["timestamp.pem"],  # online
}
EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
    "assignment": timedelta(days=7),
}
ASSIGNMENT_KEYS = "timestamp"
"""The role whose keys (in root) sign the director's cohort roles: the online key."""
ASSIGNMENT_REFRESH = timedelta(days=1)
"""An unchanged assignment is re-signed (new version, new expiry) once it expires within
this: the release step runs at least every 18 h (its sensor keeps the timestamp fresh)."""
_SER = JSONSerializer(compact=False)


class KeysMissing(LookupError):
    pass


def init_keys(directory: str | Path) -> list[str]:
    """Generate ed25519 keys for every role into ``directory`` (mode 0600); never overwrite."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for files in KEY_FILES.values():
        for name in files:
            path = d / name
            if path.exists():
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(CryptoSigner.generate_ed25519().private_bytes)
            written.append(str(path))
    return written


def key_env(name: str) -> str:
    """The environment variable that may hold key file ``name``'s PEM (e.g. root-1.pem →
    DATALOOP_TUF_KEY_ROOT_1); it wins over the file."""
    return "DATALOOP_TUF_KEY_" + name.removesuffix(".pem").upper().replace("-", "_")


def load_signers(directory: str | Path | None = None) -> dict[str, list[Signer]]:
    """Every key found, from the environment or the key folder. A role may be absent (root
    keys stay offline once root is signed); signing that role then raises KeysMissing."""
    folder = directory or os.environ.get(KEYS_ENV)
    d = Path(folder) if folder else None
    signers: dict[str, list[Signer]] = {}
    for role, files in KEY_FILES.items():
        signers[role] = []
        for name in files:
            pem = os.environ.get(key_env(name), "").encode()
            if not pem and d is not None and (d / name).is_file():
                pem = (d / name).read_bytes()
            if pem:
                signers[role].append(CryptoSigner(load_pem_private_key(pem, None)))
    if not any(signers.values()):
        raise KeysMissing(
            f"no TUF keys: set ${KEYS_ENV} (or DATALOOP_TUF_KEY_<NAME>), "
            "or run `dataloop release keys init DIR`"
        )
    return signers


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Repository:
    """Publishes targets: every publication signs new targets, snapshot and timestamp."""

    def __init__(self, store: ObjectStore, signers: dict[str, list[Signer]]):
        self.store = store
        self.signers = signers

    # -- reading -----------------------------------------------------------------------------
    def _get(self, name: str) -> Metadata | None:
        try:
            return Metadata.from_bytes(self.store.get(tuf_metadata_key(name)))
        except ObjectNotFound:
            return None

    def latest(self, role: str) -> Metadata | None:
        ts = self._get("timestamp.json")
        if ts is None:
            return None
        if role == "timestamp":
            return ts
        snap_v = ts.signed.snapshot_meta.version
        snap = self._get(f"{snap_v}.snapshot.json")
        if role == "snapshot":
            return snap
        return self._get(f"{snap.signed.meta[f'{role}.json'].version}.{role}.json")

    def root(self) -> Metadata | None:
        version, found = 1, None
        while (md := self._get(f"{version}.root.json")) is not None:
            found, version = md, version + 1
        return found

    def root_bytes(self, version: int = 1) -> bytes:
        """The trusted root a vehicle is provisioned with (bootstrap)."""
        return self.store.get(tuf_metadata_key(f"{version}.root.json"))

    # -- writing -----------------------------------------------------------------------------
    def _sign(self, md: Metadata, role: str) -> bytes:
        md.signatures.clear()
        if len(self.signers.get(role, [])) < (ROOT_THRESHOLD if role == "root" else 1):
            raise KeysMissing(f"not enough {role} keys here to sign {md.signed.type} metadata")
        for signer in self.signers[role]:
            md.sign(signer, append=True)
        return md.to_bytes(_SER)

    def _put_once(self, key: str, data: bytes) -> None:
        with contextlib.suppress(ObjectExists):
            self.store.put(key, data)

    def init(self) -> None:
        """Create root version 1 (no-op when one exists)."""
        if self._get("1.root.json") is not None:
            return
        root = Root(expires=_now() + EXPIRY["root"], consistent_snapshot=True)
        for role, signers in self.signers.items():
            for signer in signers:
                root.add_key(signer.public_key, role)
        root.roles["root"].threshold = ROOT_THRESHOLD
        self._put_once(tuf_metadata_key("1.root.json"), self._sign(Metadata(root), "root"))
        self._publish({})

    def rotate(self, role: str, new_signers: list[Signer]) -> int:
        """Replace ``role``'s keys (after a compromise or on schedule): a new root version
        signed by the current root keys (threshold) and, for root itself, the new ones too;
        vehicles walk the root chain N → N+1 and stop trusting the old keys. Returns the new
        root version."""
        md = self.root()
        root = md.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        for signer in new_signers:
            root.add_key(signer.public_key, role)
        root.version += 1
        root.expires = _now() + EXPIRY["root"]
        old_root_signers = self.signers.get("root", [])
        if len(old_root_signers) < ROOT_THRESHOLD:
            raise KeysMissing("rotating a key needs the current root keys (threshold)")
        assignments = self._assignments() if role == ASSIGNMENT_KEYS else {}
        if assignments and not self.signers.get("targets"):
            raise KeysMissing(f"rotating the {role} key re-delegates the cohorts: targets key")
        new = Metadata(root)
        signers = [*old_root_signers, *(new_signers if role == "root" else [])]
        for signer in {s.public_key.keyid: s for s in signers}.values():
            new.sign(signer, append=True)
        self.store.put(tuf_metadata_key(f"{root.version}.root.json"), new.to_bytes(_SER))
        self.signers[role] = list(new_signers)
        if role == "targets":
            self._publish({})
        elif role == "snapshot":
            self.refresh_snapshot()
        elif role == "timestamp":
            if assignments:  # the cohorts are re-delegated to the new key and re-signed with it
                self.publish_assignments(assignments, force=True)
            else:
                self.refresh_timestamp()
        return root.version

    def publish(self, files: dict[str, bytes]) -> int:
        """Add targets (``path -> bytes``) and sign new metadata; returns the targets version."""
        self.init()
        return self._publish(files)

    def _publish(self, files: dict[str, bytes]) -> int:
        for role in ("targets", "snapshot", "timestamp"):  # before anything is written
            if not self.signers.get(role):
                raise KeysMissing(f"no {role} key here: cannot publish")
        old_targets = self.latest("targets")
        targets = old_targets.signed if old_targets else Targets()
        for path, data in files.items():
            targets.targets[path] = TargetFile.from_data(path, data, ["sha256"])
        for path, data in files.items():
            self._put_once(tuf_target_key(path, targets.targets[path].hashes["sha256"]), data)
        if old_targets:
            targets.version += 1
        targets.expires = _now() + EXPIRY["targets"]
        t_bytes = self._sign(Metadata(targets), "targets")
        self.store.put(tuf_metadata_key(f"{targets.version}.targets.json"), t_bytes)  # a racing
        # publisher that signed the same version fails here instead of being lost
        return self.refresh_snapshot(targets.version)

    def refresh_snapshot(
        self, targets_version: int | None = None, roles: dict[str, int] | None = None
    ) -> int:
        """Sign a new snapshot (``roles``: delegated roles' new versions), then timestamp."""
        old = self.latest("snapshot")
        snap = old.signed if old else Snapshot()
        if targets_version is not None:
            snap.meta["targets.json"] = MetaFile(version=targets_version)
        for role, version in (roles or {}).items():
            snap.meta[f"{role}.json"] = MetaFile(version=version)
        if old:
            snap.version += 1
        snap.expires = _now() + EXPIRY["snapshot"]
        s_bytes = self._sign(Metadata(snap), "snapshot")
        self.store.put(tuf_metadata_key(f"{snap.version}.snapshot.json"), s_bytes)
        self.refresh_timestamp(snap.version)
        return snap.meta["targets.json"].version

    def refresh_timestamp(self, snapshot_version: int | None = None) -> int:
        """Re-sign timestamp with the online key (run often: it expires in a day)."""
        old = self.latest("timestamp")
        ts = old.signed if old else Timestamp()
        if snapshot_version is not None:
            ts.snapshot_meta = MetaFile(version=snapshot_version)
        if old:
            ts.version += 1
        ts.expires = _now() + EXPIRY["timestamp"]
        data = self._sign(Metadata(ts), "timestamp")
        key = tuf_metadata_key("timestamp.json")  # the one mutable metadata file: a pointer
        current = self.store.read_pointer(key)
        self.store.swap_pointer(key, data, current[1] if current else None)
        return ts.version

    # -- the director's assignments (delegated roles, one per cohort) -----------------------
    def _delegations(self) -> Delegations:
        """Top-level targets' delegation of each cohort's assignment path to the online key
        (as root names it now, so a rotation re-delegates)."""
        root = self.root().signed
        keyids = sorted(root.roles[ASSIGNMENT_KEYS].keyids)
        roles = {}
        for number in range(COHORTS):
            name = cohort_role(number)
            roles[name] = DelegatedRole(
                name=name,
                keyids=keyids,
                threshold=1,
                terminating=True,
                paths=[assignment_target(number)],
            )
        return Delegations(keys={k: root.keys[k] for k in keyids}, roles=roles)

    def _delegated(self, snap: Snapshot | None, role: str) -> Metadata | None:
        """The version of delegated ``role`` that ``snap`` names (None: not published)."""
        meta = snap.meta.get(f"{role}.json") if snap else None
        return self._get(f"{meta.version}.{role}.json") if meta else None

    def assignment(self, number: int) -> Metadata | None:
        """Cohort ``number``'s signed assignment role as published (None: never)."""
        snap = self.latest("snapshot")
        return self._delegated(snap.signed if snap else None, cohort_role(number))

    def _assignments(self) -> dict[int, bytes]:
        """The assignment each cohort's role signs now (empty before the first)."""
        snap = self.latest("snapshot")
        out = {}
        for number in range(COHORTS):
            md = self._delegated(snap.signed if snap else None, cohort_role(number))
            if md is not None:
                info = md.signed.targets[assignment_target(number)]
                out[number] = self.store.get(tuf_target_key(info.path, info.hashes["sha256"]))
        return out

    def publish_assignments(self, bodies: dict[int, bytes], force: bool = False) -> dict[int, int]:
        """Sign each cohort's assignment (``cohort -> bytes``) whose bytes changed, or whose
        role expires within ``ASSIGNMENT_REFRESH`` (``force``: all of them), as a new version
        of its role with a new expiry, then one snapshot and timestamp for all of them (a car
        never sees half a decision). The first call also delegates the cohort roles from
        top-level targets (it needs the offline targets key once). Returns the new versions."""
        self.init()
        for role in (ASSIGNMENT_KEYS, "snapshot", "timestamp"):  # before anything is written
            if not self.signers.get(role):
                raise KeysMissing(f"no {role} key here: cannot publish assignments")
        old_targets = self.latest("targets").signed
        delegated = old_targets.delegations == self._delegations()
        if not delegated and set(bodies) != set(range(COHORTS)):
            raise ValueError("the first assignment (or a re-delegation) covers every cohort")
        if not delegated and not self.signers.get("targets"):  # once, and after a rotation
            raise KeysMissing("no targets key here: cannot delegate the cohort roles")
        snap = self.latest("snapshot").signed
        now = _now()
        versions: dict[str, int] = {}
        for number, body in sorted(bodies.items()):
            role, path = cohort_role(number), assignment_target(number)
            target = TargetFile.from_data(path, body, ["sha256"])
            old = self._delegated(snap, role)
            if (
                not force
                and delegated
                and old is not None
                and old.signed.targets.get(path) == target
                and old.signed.expires > now + ASSIGNMENT_REFRESH
            ):
                continue
            self._put_once(tuf_target_key(path, target.hashes["sha256"]), body)
            md = Metadata(
                Targets(
                    version=old.signed.version + 1 if old else 1,
                    expires=now + EXPIRY["assignment"],
                    targets={path: target},
                )
            )
            while True:  # a version left unpublished by a crashed run is skipped, not reused
                data = self._sign(md, ASSIGNMENT_KEYS)
                try:
                    self.store.put(tuf_metadata_key(f"{md.signed.version}.{role}.json"), data)
                    break
                except ObjectExists:
                    md.signed.version += 1
            versions[role] = md.signed.version
        if not versions and delegated:
            return {}
        targets_version = None
        if not delegated:
            old_targets.delegations = self._delegations()
            old_targets.version += 1
            old_targets.expires = now + EXPIRY["targets"]
            t_bytes = self._sign(Metadata(old_targets), "targets")
            self.store.put(tuf_metadata_key(f"{old_targets.version}.targets.json"), t_bytes)
            targets_version = old_targets.version
        self.refresh_snapshot(targets_version, versions)
        return {int(role.rpartition("-")[2]): v for role, v in versions.items()}

    def target_paths(self) -> list[str]:
        md = self.latest("targets")
        return sorted(md.signed.targets) if md else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
