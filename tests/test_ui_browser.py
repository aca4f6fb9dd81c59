"""The Dagster UI as a person meets it: the real webserver over the README's workspace.yaml,
opened in headless Chromium after a real upload and `dataloop tick`.

The browser is Debian's chromium driven through Debian's chromedriver (explicit paths, so
Selenium Manager never looks for a driver to download); .ci/run installs both when missing.
Screenshots go to ``$DATALOOP_TEST_ARTIFACTS`` (else tests/artifacts/) for a person to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dataloop.quality.suites import load_suites
from tests.helpers import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
STAGES = ("ingest", "quality", "labeling", "curation", "training", "simulation", "release")
WAIT_S = 60

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    if os.environ.get("CI"):  # CI installs them (.ci/run): missing there is a failure
        raise RuntimeError(f"{CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip(
        "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


def _artifacts() -> Path:
    folder = Path(os.environ.get("DATALOOP_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _dataloop(env: dict, *args: str) -> dict:
    proc = subprocess.run(
        [str(BIN / "dataloop"), *args, "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"dataloop {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the webserver exited ({server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)  # polling the port, not waiting for a guess
    raise AssertionError(f"the webserver did not answer in {WAIT_S} s:\n{log.read_text()}")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def webserver(tmp_path, make_log, monkeypatch):
    """A lake with one uploaded drive taken through `dataloop tick`, and `dagster-webserver`
    over it; yields (base URL, the hour the drive arrived in)."""
    monkeypatch.delenv("DATALOOP_RULES", raising=False)
    home = tmp_path / "dagster"
    home.mkdir()
    # No telemetry, no "join the community" dialog over the pages we screenshot.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {
        **os.environ,
        "DATALOOP_LAKE": str(tmp_path / "lake"),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO),
    }
    upload = _dataloop(
        env, "fleet", "upload", str(make_log(vehicle="veh-ui", drive="d-ui")), "--vehicle", "veh-ui"
    )
    assert upload["status"] == "uploaded"

    # Create the instance's SQLite storage once, before two processes open it at the same
    # time (each would create and stamp the schema: alembic then finds two version rows).
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()

    port = free_port()
    log = tmp_path / "webserver.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # The tick runs while the webserver loads the code location (both take seconds).
        runs = _dataloop(env, "tick")["runs"]
        ingest = [r for r in runs if r["job"] == "ingest_job"]
        assert [r["status"] for r in ingest] == ["SUCCESS"], runs
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(url, server, log)
        yield url, ingest[0]["partition"]
    finally:
        stop_group(server, grace=15)  # the webserver and its code server


def _shoot(driver, name: str) -> Path:
    path = _artifacts() / name
    path.unlink(missing_ok=True)
    assert driver.save_screenshot(str(path))
    return path


def test_ui_shows_the_asset_graph_and_materialization_metadata(webserver, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    url, hour = webserver
    wait = WebDriverWait(browser, WAIT_S)

    def graph_node(name: str, inside: str = "") -> tuple[str, str]:
        """A node of the rendered lineage graph (an SVG foreignObject) labelled ``name``, or
        the element ``inside`` it."""
        node = f"//*[local-name()='foreignObject'][.//*[@data-tooltip='{name}']]"
        return By.XPATH, node + inside

    def text_in(xpath: str, text: str):
        return seen.text_to_be_present_in_element((By.XPATH, xpath), text)

    # The global lineage: one node per stage group.
    browser.get(f"{url}/asset-groups")
    for group in STAGES:
        wait.until(seen.visibility_of_element_located(graph_node(group)))
    lineage = _shoot(browser, "ui-global-lineage.png")

    # A stage's own graph: its assets, by name.
    browser.get(f"{url}/locations/dataloop/asset-groups/quality/lineage")
    for asset in ("drive_verdicts", "approved_drives", "compliant_drives"):
        wait.until(seen.visibility_of_element_located(graph_node(asset)))
        # its latest event loaded: a link to the tick's run that materialized it
        latest_run = graph_node(asset, "//a[starts-with(@href, '/runs/')]")
        wait.until(seen.visibility_of_element_located(latest_run))
    quality = _shoot(browser, "ui-quality-lineage.png")

    # The verdicts' latest materialization: the metadata it emitted, as emitted.
    browser.get(f"{url}/assets/drive_verdicts")
    suites_version = load_suites().version
    value = "//tr[td[normalize-space()='{}']]/td[last()]"  # a metadata entry's value cell
    wait.until(text_in(value.format("suites_version"), suites_version))
    wait.until(text_in(value.format("summary"), "1 drives: 1 pass"))
    assert browser.find_element(By.XPATH, value.format("pass")).text.strip() == "1"
    assert browser.find_element(By.XPATH, value.format("quarantined")).text.strip() == "0"
    # the per-drive verdicts table
    wait.until(text_in("//table//table", "veh-ui"))
    assert "d-ui" in browser.find_element(By.XPATH, "//table//table").text
    assert hour in browser.find_element(By.TAG_NAME, "body").text  # the partition it was for
    metadata = _shoot(browser, "ui-drive-verdicts-metadata.png")

    for png in (lineage, quality, metadata):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png
        assert len(data) > 20_000, f"{png} is {len(data)} bytes: a blank page?"
