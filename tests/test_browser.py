"""The UI in a real browser (Debian's Chromium driven by Playwright) over a materialized instance: the lineage
graph, an asset's partitions, a check's result and a metadata image are on screen. Screenshots are saved under
the test's tmp folder (and $SYNTHDATA_SCREENSHOTS when set)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import ensure_instance
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
DAY = "2024-01-01"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path, digits):
    """`dagster-webserver` over the instance of a home where one day's ingest job ran."""
    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    export_as_drops(images[:150], labels[:150], names, paths.landing, [DAY], seed=0)
    ensure_instance(paths.dagster_home)
    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
    from dagster_project.jobs import daily_ingest_job

    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job], resources=build_resources(paths))
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key=DAY).success

    port = free_port()
    env = {**os.environ, "SYNTHDATA_HOME": str(paths.home), "DAGSTER_HOME": str(paths.dagster_home)}
    log = open(tmp_path / "webserver.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-m", "dagster_project.definitions"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        # The webserver's code server child can outlive a polite signal: SIGKILL the group after a grace period.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_the_ui_shows_lineage_partitions_a_check_result_and_a_metadata_image(webserver, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def visit(path: str) -> None:
            page.goto(webserver + path)
            skip = page.get_by_role("button", name="Skip")  # the first visit's "Join the Dagster community" dialog
            try:
                skip.click(timeout=4000)
            except Exception:
                pass

        try:
            # Lineage: the graph around `images`, from the drop to the curated tables.
            visit("/assets/images?view=lineage")
            for name in ("raw_images", "images", "splits", "label_issues", "image_issues"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=30_000)
            page.screenshot(path=shots / "lineage.png")

            # Partitions: one day of 1,070 materialized.
            visit("/assets/raw_images?view=partitions")
            expect(page.get_by_text("Materialized (1)")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Missing (1069)")).to_be_visible()
            page.screenshot(path=shots / "partitions.png")

            # A check result: the splits' blocking leakage check passed on the latest materialization.
            visit("/assets/splits?view=checks")
            expect(page.get_by_text("splits_no_leak").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Succeeded").first).to_be_visible()
            expect(page.get_by_text("This is a blocking asset check.").or_(page.get_by_text("Passed")).first).to_be_visible()
            page.screenshot(path=shots / "checks.png")

            # A metadata image: the drop's sample grid, a base64 PNG inside markdown metadata.
            visit(f"/assets/raw_images?view=partitions&partition={DAY}")
            expect(page.get_by_text("per_label")).to_be_visible(timeout=30_000)
            page.get_by_text("[Show Markdown]").first.click()
            image = page.locator('img[src^="data:image/png;base64"]').first
            expect(image).to_be_visible(timeout=15_000)
            assert image.evaluate("img => img.naturalWidth") > 0
            page.screenshot(path=shots / "sample_grid.png")
        finally:
            page.screenshot(path=shots / "last.png")
            browser.close()
    assert {p.name for p in shots.iterdir()} >= {"lineage.png", "partitions.png", "checks.png", "sample_grid.png"}
    if os.environ.get("SYNTHDATA_SCREENSHOTS"):
        shutil.copytree(shots, os.environ["SYNTHDATA_SCREENSHOTS"], dirs_exist_ok=True)
