"""The UI in a real browser (Debian's Chromium driven by Playwright) over a materialized instance: the lineage
graph, an asset's partitions, a check's result and a metadata image are on screen. Screenshots are saved under
the test's tmp folder (and $SYNTHDATA_SCREENSHOTS when set). The webserver comes from conftest
(`webserver_over_one_ingested_day`)."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)"),
]


def test_the_ui_shows_lineage_partitions_a_check_result_and_a_metadata_image(webserver_over_one_ingested_day, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from assets.partitions import daily_drops

    served = webserver_over_one_ingested_day

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def visit(path: str) -> None:
            page.goto(served.url + path)
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

            # Partitions: one day of all the daily partitions so far (1,071 on 2026-12-07) materialized.
            visit("/assets/raw_images?view=partitions")
            expect(page.get_by_text("Materialized (1)")).to_be_visible(timeout=30_000)
            expect(page.get_by_text(f"Missing ({len(daily_drops.get_partition_keys()) - 1})")).to_be_visible()
            page.screenshot(path=shots / "partitions.png")

            # A check result: the splits' blocking leakage check passed on the latest materialization.
            visit("/assets/splits?view=checks")
            expect(page.get_by_text("splits_no_leak").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Succeeded").first).to_be_visible()
            expect(page.get_by_text("This is a blocking asset check.").or_(page.get_by_text("Passed")).first).to_be_visible()
            page.screenshot(path=shots / "checks.png")

            # A metadata image: the drop's sample grid, a base64 PNG inside markdown metadata.
            visit(f"/assets/raw_images?view=partitions&partition={served.day}")
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
