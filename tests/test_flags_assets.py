"""Real materializations of `label_issues` and `image_issues` on digit drops with planted problems."""

import shutil

import dagster as dg
import duckdb
import numpy as np
import pytest

from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from dagster_project.jobs import daily_ingest_job
from synthdata.curation.label_issues import plant_label_flips
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

DATES = ["2024-03-01", "2024-03-02"]
FLAG_ASSETS = [dg.AssetKey(k) for k in ("raw_images", "images", "label_issues", "image_issues")]


@pytest.fixture(scope="module")
def flagged(tmp_path_factory, digits):
    """800 digits in two drops: 24 labels flipped, 6 images darkened, one file copied under another label."""
    images, labels, names = digits
    images, labels = images[:800].copy(), labels[:800].copy()
    true_labels = labels
    labels, moved = plant_label_flips(labels, 0.03, 10, seed=0)
    flips = np.flatnonzero(moved)
    dark = np.setdiff1d(np.arange(800), flips)[:6]
    images[dark] = (images[dark] * 0.25).astype(np.uint8)

    home = tmp_path_factory.mktemp("home")
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    manifest = export_as_drops(images, labels, names, paths.landing, DATES, seed=0)
    # The same file again in the second drop, filed under another class: a label conflict among copies.
    first = manifest.files[DATES[0]][0]
    other = names[(int(first.split("/")[1]) + 1) % 10]
    (paths.landing / DATES[1] / other).mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.landing / first, paths.landing / DATES[1] / other / "conflict_copy.png")

    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job], resources=build_resources(paths))
    instance = dg.DagsterInstance.ephemeral()
    runs = [
        defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key=d, asset_selection=FLAG_ASSETS)
        for d in DATES
    ]
    return paths, runs, manifest, flips, true_labels, dark, first


def rows(paths, sql):
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def metadata(run, key):
    return next(
        e.step_materialization_data.materialization.metadata
        for e in run.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key.to_user_string() == key
    )


def image_index(paths, manifest) -> dict[str, int]:
    """image_id -> index into the exported digits (from the file names `img_NNNNNN.png`)."""
    df = rows(paths, "SELECT image_id, source_path FROM images")
    return {i: int(s.rsplit("_", 1)[1].split(".")[0]) for i, s in zip(df["image_id"], df["source_path"])}


def test_flipped_labels_are_flagged_with_the_true_label_suggested(flagged):
    paths, runs, manifest, flips, true_labels, _, _ = flagged
    assert all(r.success for r in runs)
    index = image_index(paths, manifest)
    mis = rows(paths, "SELECT * FROM label_issues WHERE kind = 'mislabel'")
    found = {index[i] for i in mis["image_id"]}
    hits = found & set(flips.tolist())
    assert len(hits) >= 0.7 * len(flips) and len(hits) >= 0.7 * len(found)
    suggested = dict(zip(mis["image_id"].map(index), mis["suggested_label"]))
    assert np.mean([suggested[i] == str(true_labels[i]) for i in hits]) >= 0.9
    assert mis["run_id"].eq(runs[-1].run_id).all()
    # flags, never deletions
    assert len(rows(paths, "SELECT * FROM images")) == 800


def test_a_copy_under_another_label_is_a_conflict(flagged):
    paths, _, _, _, _, _, first = flagged
    conflict = rows(paths, "SELECT l.*, i.source_path FROM label_issues l JOIN images i USING (image_id) WHERE kind = 'conflict'")
    assert list(conflict["source_path"]) == [first]
    assert conflict["score"].iloc[0] == pytest.approx(0.5) and "x1" in conflict["detail"].iloc[0]


def test_darkened_images_are_flagged_dark(flagged):
    paths, _, manifest, _, _, dark, _ = flagged
    index = image_index(paths, manifest)
    issues = rows(paths, "SELECT * FROM image_issues")
    dark_found = {index[i] for i in issues.loc[issues["issue"] == "dark", "image_id"]}
    assert set(dark.tolist()) <= dark_found
    assert issues["image_id"].nunique() <= 6 + 0.01 * 800
    assert (issues["score"] < issues["threshold"]).all()


def test_materializations_carry_counts_thresholds_and_galleries(flagged):
    _, runs, *_ = flagged
    labels = metadata(runs[-1], "label_issues")
    assert labels["mislabel_flags"].value > 0 and labels["conflict_flags"].value == 1
    assert 0.0 < labels["estimated_noise_rate"].value < 0.1
    assert "![" in labels["gallery"].value and "**mislabel**" in labels["gallery"].value
    images = metadata(runs[-1], "image_issues")
    assert images["dark_flags"].value >= 6 and "dark" in images["thresholds"].value
    assert "**dark**" in images["gallery"].value
