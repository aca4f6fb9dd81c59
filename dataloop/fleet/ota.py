"""The vehicle's OTA client: python-tuf's ``ngclient.Updater`` over the lake.

The vehicle is provisioned with a trusted root (``bootstrap``); every update verifies
timestamp → snapshot → targets (signatures, thresholds, versions, expiries, lengths) and the
target's length and sha256 before anything is installed. Installed bundles live under
``<home>/installed/release-<N>/``; ``current.json`` says what the vehicle runs.

What to run is not decided here: the cloud's director publishes each cohort's assignment as
a delegated TUF targets role (``cohort-NN``, see ``dataloop.release.repository``), and the car
reads its own cohort's through the same updater, so the assignment is verified like a bundle:
signed by the key top-level targets delegates it to, its version no older than the snapshot
says (no rollback), not expired (no freeze), its bytes matching. On top of TUF the car refuses
an assignment that names an older release than the one it runs (the director never moves a
car backwards: a rollback is a new, higher release of the previous model) and a release
whose signed notes name another model than the assignment does. A refused assignment leaves
the car on its current policy. The car needs only this package, the lake and ``policy``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tuf.api.exceptions import DownloadError, DownloadHTTPError, RepositoryError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from dataloop.lake.layout import (
    TUF_METADATA,
    TUF_TARGETS,
    assignment_target,
    cohort,
    release_target,
    tuf_metadata_key,
)
from dataloop.lake.store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)
ROOT_ENV = "DATALOOP_TUF_ROOT"
"""A file holding the trusted root a simulated vehicle is provisioned with."""


class AssignmentRefused(Exception):
    """The car's signed assignment did not verify (forged, stale, rolled back, or naming
    another model than its release): the car keeps running what it runs."""


SCHEME = "lake://"


class LakeFetcher(FetcherInterface):
    """Reads ``lake://<key>`` URLs from the object store (a 404 when absent)."""

    def __init__(self, store: ObjectStore, chunk: int = 1 << 20):
        self.store = store
        self.chunk = chunk

    def _fetch(self, url: str) -> Iterator[bytes]:
        key = url.removeprefix(SCHEME)
        try:
            stream = self.store.open(key)
        except ObjectNotFound:
            raise DownloadHTTPError(f"not found: {key}", 404) from None
        with stream:
            while block := stream.read(self.chunk):
                yield block


class OtaClient:
    def __init__(self, store: ObjectStore, home: str | Path, trusted_root: bytes | None = None):
        self.store = store
        self.home = Path(home)
        self.metadata_dir = self.home / "tuf"
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        root = self.metadata_dir / "root.json"
        if trusted_root is not None and not root.exists():
            root.write_bytes(trusted_root)
        if not root.exists():
            raise LookupError("vehicle has no trusted TUF root (provision one)")

    def _updater(self) -> Updater:
        return Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=f"{SCHEME}{TUF_METADATA}/",
            target_dir=str(self.home / "downloads"),
            target_base_url=f"{SCHEME}{TUF_TARGETS}/",
            fetcher=LakeFetcher(self.store),
            bootstrap=None,
        )

    def assignment(self, vehicle: str) -> dict | None:
        """The director's signed assignment for ``vehicle``'s cohort, verified through TUF
        (None: the director has published none yet). Raises AssignmentRefused."""
        number = cohort(vehicle)
        path = assignment_target(number)
        downloads = self.home / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        try:
            updater = self._updater()
            updater.refresh()
            info = updater.get_targetinfo(path)
            if info is None:
                return None
            fetched = updater.download_target(info, str(downloads / "assignment.json"))
            body = json.loads(Path(fetched).read_bytes())
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except (RepositoryError, DownloadError, ValueError) as err:
            raise AssignmentRefused(
                f"{vehicle}: the assignment of cohort {number} is refused: "
                f"{type(err).__name__}: {err}"
            ) from err
        release, model = body.get("release"), body.get("model_version")
        if (
            body.get("kind") != "assignment"
            or body.get("cohort") != number
            or not (release is None or isinstance(release, int))
            or not isinstance(model, str)
        ):
            raise AssignmentRefused(f"{vehicle}: {path} is not cohort {number}'s assignment")
        current = self.running()
        if current is not None and (release or 0) < current["release"]:
            raise AssignmentRefused(
                f"{vehicle}: the assignment names release {release}, older than "
                f"release {current['release']} that the vehicle runs (a rollback is a new "
                "release; an older one is refused)"
            )
        return body

    def install(self, release: int, model_version: str | None = None) -> dict:
        """Verify and install release ``release``; raises a tuf exception on any attack (and
        AssignmentRefused when its signed notes name another model than ``model_version``)."""
        updater = self._updater()
        updater.refresh()
        staging = self.home / "staging" / f"release-{release}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (self.home / "downloads").mkdir(exist_ok=True)
        notes_path = release_target(release, "release_notes.json")
        for path in [notes_path]:
            info = updater.get_targetinfo(path)
            if info is None:
                raise LookupError(f"release {release} has no signed target {path}")
            updater.download_target(info, str(staging / "release_notes.json"))
        for name in json.loads((staging / "release_notes.json").read_text())["files"]:
            path = release_target(release, name)
            info = updater.get_targetinfo(path)
            if info is None:
                raise LookupError(f"release {release} has no signed target {path}")
            updater.download_target(info, str(staging / name))
        notes = json.loads((staging / "release_notes.json").read_text())
        if model_version is not None and notes["model_version"] != model_version:
            shutil.rmtree(staging, ignore_errors=True)
            raise AssignmentRefused(
                f"release {release} is model {notes['model_version']}, not the assigned "
                f"{model_version}"
            )
        final = self.home / "installed" / f"release-{release}"
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
        current = {"release": release, "model_version": notes["model_version"], "path": str(final)}
        tmp = self.home / "current.json.tmp"
        tmp.write_text(json.dumps(current))
        tmp.replace(self.home / "current.json")
        return current

    def running(self) -> dict | None:
        """What the vehicle runs (reported with its telemetry)."""
        path = self.home / "current.json"
        return json.loads(path.read_text()) if path.exists() else None

    def policy(self):
        """The installed bundle as a driving policy (the baseline before any install)."""
        from dataloop.policy.bundle import load_installed
        from dataloop.policy.bundle_policy import BundlePolicy
        from dataloop.policy.observation import BASELINE, BaselineExpert

        current = self.running()
        if current is None or current["model_version"] == BASELINE:
            return BaselineExpert()
        return BundlePolicy(load_installed(Path(current["path"]), current["model_version"]))


OTA = "ota"
"""The fleet's ``--model ota``: each vehicle runs what the director assigns it, via TUF."""


def provisioned_root(store: ObjectStore) -> bytes | None:
    """The trusted root a simulated vehicle starts from: ``$DATALOOP_TUF_ROOT`` (a file), else
    root v1 from the lake on first use (a real vehicle gets it at the factory)."""
    if root_file := os.environ.get(ROOT_ENV):
        return Path(root_file).read_bytes()
    try:
        return store.get(tuf_metadata_key("1.root.json"))
    except ObjectNotFound:
        return None


def vehicle_policy(store: ObjectStore, vehicle: str, home: str | Path):
    """Read ``vehicle``'s signed assignment through TUF, install the assigned release
    (verified) when it is not the one installed, and return the installed bundle as the
    vehicle's driving policy. A refused assignment or release is logged and the vehicle keeps
    driving its current policy (the baseline before any install); so does a vehicle the
    director has assigned nothing yet."""
    home = Path(home)
    root = provisioned_root(store)
    if root is None and not (home / "tuf" / "root.json").exists():
        from dataloop.policy.observation import BaselineExpert

        return BaselineExpert()  # no release was ever published: nothing to verify
    client = OtaClient(store, home, trusted_root=root)
    try:
        target = client.assignment(vehicle)
        current = client.running()
        release = target["release"] if target is not None else None
        if release is not None and (current is None or current["release"] != release):
            client.install(release, target["model_version"])
    except (AssignmentRefused, LookupError, RepositoryError, DownloadError) as err:
        # LookupError: the assigned release has no target signed by the offline key
        log.warning("%s keeps running %s: %s", vehicle, client.running(), err)
    return client.policy()
