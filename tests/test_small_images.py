"""Resized copies of small images (scikit-learn's real 8x8 digits shrunk to 4-7 px): the pixel channel pairs
them where pHash cannot, whichever of the two arrived first, and curation folds them."""

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from PIL import Image

from synthdata.curation.curate import curate
from synthdata.curation.ingest import ingest_partition
from synthdata.datasets import load_digits_uint8
from synthdata.dedup.candidates import candidate_pairs
from synthdata.dedup.phash import phash_images, to_signed
from synthdata.dedup.small_images import merge_pairs, resized_small_pairs
from synthdata.io.store import BlobStore
from synthdata.io.warehouse import connect

FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def shrunk_copies(digits: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """n digits (seeded) and a copy of each resized to 4-7 px by a standard filter."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(digits), n, replace=False)
    copies = []
    for k, i in enumerate(picked):
        side = 4 + k % 4
        copies.append(np.asarray(Image.fromarray(digits[i]).resize((side, side), FILTERS[int(rng.integers(3))])))
    return picked, copies


def test_the_channel_pairs_every_shrunk_copy_with_its_original_where_phash_does_not():
    digits, _, _ = load_digits_uint8()
    picked, copies = shrunk_copies(digits, 120, seed=3)
    images = list(digits) + copies
    ids = [f"i{k:05d}" for k in range(len(images))]
    truth = {(ids[o], ids[len(digits) + k]) for k, o in enumerate(picked)}
    shapes = [im.shape[:2] for im in images]
    by_id = dict(zip(ids, images))

    # pHash alone: the banded search over the same images pairs few of them.
    con = duckdb.connect()
    hashes = to_signed(phash_images([Image.fromarray(im) for im in images]))
    frame = pd.DataFrame({"image_id": ids, "phash": hashes, "is_new": [k >= len(digits) for k in range(len(ids))]})
    con.register("frame", frame)
    con.execute("CREATE TABLE h AS SELECT * FROM frame")
    by_phash = set(zip(*candidate_pairs(con, "h", 10, crop_radius=None, shift_radius=None)[["a", "b"]].T.values))
    assert len(truth & by_phash) < 0.6 * len(truth)

    for copies_new in (True, False):  # the copies arrive after their originals, or before them
        new = [(k >= len(digits)) == copies_new for k in range(len(images))]
        pairs = resized_small_pairs(ids, shapes, new, by_id.__getitem__)
        found = set(zip(pairs["a"], pairs["b"]))
        assert truth <= found, f"missed {len(truth - found)} (copies new: {copies_new})"
        assert (pairs["a"] < pairs["b"]).all() and not pairs.duplicated(["a", "b"]).any()
        # Bounded (no all-pairs flood): per new image MAX_PARTNERS (4) as the smaller one, plus one per smaller
        # shape (4 here: 4-7 px) as the larger one.
        assert len(pairs) <= (4 + 4) * sum(new)
        # Pairs of two old images were settled before: none here.
        old = {i for i, n in zip(ids, new) if not n}
        assert not any(a in old and b in old for a, b in found)

    merged = merge_pairs(pd.DataFrame({"a": ["i00000"], "b": ["i00001"], "distance": [3]}), pairs, dict(zip(ids, hashes)))
    assert merged["crop_only"].sum() == len(merged) - 1 and merged.iloc[0]["distance"] == 3
    assert list(zip(merged["a"], merged["b"])) == sorted(zip(merged["a"], merged["b"]))


def test_images_of_one_shape_or_larger_than_the_pool_make_no_pairs_and_are_not_loaded():
    digits, _, _ = load_digits_uint8()
    loaded = []

    def load(i: str) -> np.ndarray:
        loaded.append(i)
        return digits[int(i)]

    pairs = resized_small_pairs([str(k) for k in range(50)], [(8, 8)] * 50, [True] * 50, load)
    assert pairs.empty and loaded == []
    pairs = resized_small_pairs(["0", "1"], [(5, 5), (28, 28)], [True, True], load)
    assert pairs.empty and loaded == []


def test_curation_folds_shrunk_copies_of_digits_into_their_originals(tmp_path):
    digits, labels, _ = load_digits_uint8()
    picked, copies = shrunk_copies(digits, 40, seed=5)
    landing = tmp_path / "landing"
    for i in range(400):
        path = landing / "2024-01-01" / f"d{labels[i]}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits[i]).save(path)
    copies = [(i, c) for i, c in zip(picked, copies) if i < 400][:12]
    for i, copy in copies:
        path = landing / "2024-01-02" / f"d{labels[i]}" / f"copy_of_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(copy).save(path)
    assert len(copies) >= 8
    store = BlobStore(tmp_path / "store")
    con = connect(tmp_path / "w.duckdb")
    load = lambda key: np.asarray(store.decode(key).image)  # noqa: E731
    ingest_partition(con, "2024-01-01", landing / "2024-01-01", landing, store, workers=0)
    first = curate(con, load)
    ingest_partition(con, "2024-01-02", landing / "2024-01-02", landing, store, workers=0)
    second = curate(con, load)
    near = con.execute(
        """SELECT g.member_source, i.source_path FROM duplicate_groups g JOIN images i ON i.image_id = g.representative_id
           WHERE g.kind = 'near'"""
    ).fetchall()
    folded = {Path(m).name: Path(r).name for m, r in near}
    assert {f"copy_of_{i:04d}.png": f"{i:04d}.png" for i, _ in copies}.items() <= folded.items()
    assert second.images == first.images  # every copy folded, no distinct digit lost
    # Digits of one size make no pairs of shapes; the shrunk copies are what the channel adds.
    assert first.small_image_candidates == 0 and second.small_image_candidates >= len(copies)


def test_the_pairs_do_not_depend_on_how_the_comparison_is_chunked(monkeypatch):
    """Memory is bounded by chunking both sides; the result (ties included: identical digits shrink alike)
    must be the same as in one piece, whichever images are new."""
    import synthdata.dedup.small_images as small_images

    digits, _, _ = load_digits_uint8()
    rng = np.random.default_rng(11)
    images = list(digits[:600])
    for i in rng.choice(600, 200, replace=False):
        side = int(rng.integers(4, 17))
        images.append(np.asarray(Image.fromarray(digits[i]).resize((side, side), FILTERS[int(rng.integers(3))])))
    ids = [f"i{k:04d}" for k in range(len(images))]
    by_id = dict(zip(ids, images))
    shapes = [im.shape[:2] for im in images]
    for new in ([k >= 600 for k in range(len(ids))], [k < 600 for k in range(len(ids))], list(rng.random(len(ids)) < 0.3)):
        whole = resized_small_pairs(ids, shapes, new, by_id.__getitem__)
        monkeypatch.setattr(small_images, "_ROWS", 37)
        monkeypatch.setattr(small_images, "_COLS", 23)
        chunked = resized_small_pairs(ids, shapes, new, by_id.__getitem__)
        monkeypatch.undo()
        assert len(whole) > 100
        pd.testing.assert_frame_equal(whole[["a", "b"]], chunked[["a", "b"]])
        np.testing.assert_allclose(whole["correlation"], chunked["correlation"], rtol=1e-5)
