"""The vehicle's OTA client: python-tuf's ``ngclient.Updater`` over the lake.

The vehicle is provisioned with a trusted root (``bootstrap``); every update verifies
timestamp → snapshot → targets (signatures, thresholds, versions, expiries, lengths) and the
target's length and sha256 before anything is installed. Installed bundles live under
``<home>/installed/release-<N>/``; ``current.json`` says what the vehicle runs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from dataloop.lake.layout import TUF_METADATA, TUF_TARGETS, release_target
from dataloop.lake.store import ObjectNotFound, ObjectStore

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

    def install(self, release: int) -> dict:
        """Verify and install release ``release``; raises a tuf exception on any attack."""
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


def vehicle_policy(store: ObjectStore, vehicle: str, home: str | Path):
    """Ask the director which release ``vehicle`` runs, install it through TUF (verified),
    and return the installed bundle as the vehicle's driving policy. The simulated vehicle is
    provisioned with root v1 from ``$DATALOOP_TUF_ROOT`` (a file), else from the lake on
    first use (a real vehicle gets it at the factory)."""
    import os

    from dataloop.release.repository import Repository
    from dataloop.release.rollout import assign

    target = assign(store, vehicle)
    root_file = os.environ.get("DATALOOP_TUF_ROOT")
    if target["release"] is None:
        from dataloop.policy.bundle_policy import load_policy

        return load_policy(target["model_version"], store)
    trusted = Path(root_file).read_bytes() if root_file else Repository(store, {}).root_bytes()
    client = OtaClient(store, home, trusted_root=trusted)
    current = client.running()
    if current is None or current["release"] != target["release"]:
        client.install(target["release"])
    return client.policy()
