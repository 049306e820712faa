"""One decode-limits setting for every stage: the `image_store` resource.

A real photo upscaled to 51 megapixels and a real photo stretched into a 128:1 strip land beside 150 real
digits. Under stricter-than-needed limits ingest rejects both with a reason naming the setting and where it
lives; with the limits raised on the resource they pass ingest and every later stage that decodes them
(dedup, splits and the leakage audit, label and image flags, galleries, training arrays) without a decode
error. The strip is beyond the default `max_aspect`: any stage that decoded with `DecodeLimits()` instead of
the store's limits would reject it.
"""

import io

import dagster as dg
import duckdb
import numpy as np
import pytest
from PIL import Image

from assets.partitions import daily_drops
from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from resources import ImageStoreResource
from synthdata.io.imageio import DecodeLimits, ImageRejected
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths
from synthdata.io.store import BlobStore

DAY = "2024-05-01"
STAGES = ("raw_images", "images", "splits", "label_issues", "image_issues")
# decode_pixels low as well: every stage works on the reduced decode (and near-duplicate calibration on a
# 51 MP photo decoded to 1792x1792 took minutes).
RAISED = {"max_pixels": 64_000_000, "max_aspect": 200.0, "decode_pixels": 250_000}


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def large_files() -> dict[str, bytes]:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    return {
        # 7168 x 7168 = 51.4 MP of real photo (~20 MB): a 48 MP phone photo's size.
        "photo_51mp.png": _png(astronaut.resize((7168, 7168), Image.Resampling.BILINEAR), compress_level=1),
        # 12800 x 100: a long scanned strip, beyond the default max_aspect of 100.
        "strip_128to1.png": _png(astronaut.resize((12800, 100), Image.Resampling.BILINEAR)),
    }


def _home(tmp_path_factory, digits, large_files, name: str) -> SynthdataPaths:
    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path_factory.mktemp(name), landing=tmp_path_factory.mktemp(name) / "landing")
    paths.ensure()
    export_as_drops(images[:150], labels[:150], names, paths.landing, [DAY], seed=0)
    (paths.landing / DAY / "scan").mkdir()
    for file, data in large_files.items():
        (paths.landing / DAY / "scan" / file).write_bytes(data)
    return paths


def _run(paths: SynthdataPaths, stages: tuple[str, ...], **limits) -> dg.ExecuteInProcessResult:
    """The daily ingest's stages (and their checks) for one drop, with the decode limits set on the resource."""
    resources = build_resources(paths)
    resources["image_store"] = ImageStoreResource(home=str(paths.home), landing=str(paths.landing), **limits)
    job = dg.define_asset_job("stages", selection=dg.AssetSelection.assets(*stages), partitions_def=daily_drops)
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[job], resources=resources)
    return defs.resolve_job_def("stages").execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=DAY)


def _rows(paths: SynthdataPaths, sql: str) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_large_images_are_rejected_with_the_setting_and_its_place_named(tmp_path_factory, digits, large_files):
    paths = _home(tmp_path_factory, digits, large_files, "strict")
    result = _run(paths, ("raw_images",), max_pixels=40_000_000)  # the old default ceiling
    assert result.success
    reasons = dict(_rows(paths, "SELECT source_path, reason FROM rejected_images"))
    assert reasons == {
        f"{DAY}/scan/photo_51mp.png": "too many pixels: 7168x7168 = 51380224, larger than max_pixels=40000000; "
        "raise it in the image_store resource config (ImageStoreResource.max_pixels)",
        f"{DAY}/scan/strip_128to1.png": "absurd aspect ratio: 12800x100 (128:1), beyond max_aspect=100; "
        "raise it in the image_store resource config (ImageStoreResource.max_aspect)",
    }
    assert _rows(paths, "SELECT count(*) FROM raw_images") == [(150,)]


def test_limits_raised_on_the_resource_carry_large_images_through_every_stage(tmp_path_factory, digits, large_files):
    from assets._util import load_split

    paths = _home(tmp_path_factory, digits, large_files, "raised")
    result = _run(paths, STAGES, **RAISED)
    assert result.success
    failed_steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failed_steps == []
    # Accepted large images are data: the tables' expectations have no upper side bound by default.
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["raw_images_expectations"] and checks["images_expectations"], checks
    assert _rows(paths, "SELECT count(*) FROM rejected_images") == [(0,)]
    ingest = result.asset_materializations_for_node("raw_images")[0].metadata
    assert ingest["decoded_reduced"].value == 2  # both, under decode_pixels from the resource
    rows = _rows(paths, "SELECT image_id, source_path, width, height FROM images WHERE label = 'scan' ORDER BY 2")
    assert [r[1:] for r in rows] == [
        (f"{DAY}/scan/photo_51mp.png", 7168, 7168), (f"{DAY}/scan/strip_128to1.png", 12800, 100)
    ]  # the originals' sizes
    large = {r[0]: r[1] for r in rows}
    split_of = dict(_rows(paths, "SELECT image_id, split FROM splits"))
    assert set(large) <= set(split_of)
    odd = _rows(paths, "SELECT image_id FROM image_issues WHERE issue = 'odd_aspect_ratio'")
    assert (next(i for i, s in large.items() if "strip" in s),) in odd  # scored from its (store-limits) decode

    store = ImageStoreResource(home=str(paths.home), landing=str(paths.landing), **RAISED).store()
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        loaded = {split: load_split(con, store, split) for split in set(split_of[i] for i in large)}
    finally:
        con.close()
    for image_id, split in ((i, split_of[i]) for i in large):
        arrays = loaded[split]
        assert arrays.pixels.shape[1:] == (8, 8) and image_id in arrays.ids  # the digits' training format


def test_a_stage_reading_the_store_decodes_under_the_store_limits_and_names_them(tmp_path, large_files):
    raised = BlobStore(tmp_path, DecodeLimits(max_aspect=200.0))
    key = raised.put(BlobStore.key_for("ab" * 32, "png"), large_files["strip_128to1.png"])
    assert raised.decode(key).image.size == (12800, 100)
    with pytest.raises(ImageRejected) as e:
        BlobStore(tmp_path).decode(key)  # the same object under the default limits
    assert e.value.reason.startswith(f"stored image {key} (limits tightened since ingest?): absurd aspect ratio")
    assert "(ImageStoreResource.max_aspect)" in e.value.reason


def test_an_ingest_cannot_decode_under_other_limits_than_its_store(tmp_path, landing):
    from synthdata.curation.ingest import ingest_items

    with pytest.raises(ValueError, match="set them there"):
        next(ingest_items([], BlobStore(tmp_path), DecodeLimits(max_aspect=200.0)))


def test_old_limit_keys_on_the_raw_images_config_fail_naming_the_resource(tmp_path_factory):
    from assets.ingest import raw_images

    paths = SynthdataPaths(home=tmp_path_factory.mktemp("old"), landing=tmp_path_factory.mktemp("old") / "l").ensure()
    result = dg.materialize(
        [raw_images], partition_key=DAY, resources=build_resources(paths), raise_on_error=False,
        run_config={"ops": {"raw_images": {"config": {"max_aspect": 200.0}}}},
    )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    assert "raw_images config sets {'max_aspect': 200.0}" in message
    assert "resources: image_store: config: {'max_aspect': 200.0}" in message
    assert not result.asset_materializations_for_node("raw_images")  # nothing ingested under the old key
