"""Banded candidate search, pixel confirmation and grouping on real behaviour and numbers."""

from __future__ import annotations

import io

import duckdb
import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from benchmarks.candidate_search import band_collisions
from synthdata.datasets import load_digits_uint8
from synthdata.dedup.candidates import band_layout, candidate_pairs, search_plan
from synthdata.dedup.confirm import (
    DEFAULT_SIMILARITY,
    REPRO_SIMILARITY,
    confirm_pairs,
    reproduction_similarity,
    similarity,
)
from synthdata.dedup.groups import group_duplicates, group_sizes, representative_checks
from synthdata.dedup.phash import hamming, to_signed


def clustered_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random hashes plus copies with 0..12 flipped bits, so every radius has pairs to find."""
    base = rng.integers(0, 2**64 - 1, n // 3, dtype=np.uint64, endpoint=True)
    near = []
    for i in rng.integers(0, len(base), n - len(base)):
        bits = rng.choice(64, int(rng.integers(0, 13)), replace=False)
        near.append(base[i] ^ np.uint64(sum(1 << int(b) for b in bits)))
    return np.concatenate([base, np.array(near, dtype=np.uint64)])


@pytest.fixture(scope="module")
def hash_table() -> tuple[duckdb.DuckDBPyConnection, list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    hashes = clustered_hashes(2500, rng)
    ids = [f"img{i:05d}" for i in range(len(hashes))]
    is_new = rng.random(len(hashes)) < 0.3
    frame = pd.DataFrame({"image_id": ids, "phash": to_signed(hashes), "is_new": is_new})
    con = duckdb.connect()
    con.execute("CREATE TABLE hashes AS SELECT image_id, phash, is_new FROM frame")
    con.execute("CREATE TABLE hashes_u AS SELECT image_id, phash::UBIGINT AS phash, is_new FROM frame "
                "WHERE phash >= 0")
    # A second hash per image: near the first for clustered images (copies), 0 (none) for every 7th image.
    second = hashes ^ (hashes >> np.uint64(3))
    second[::7] = 0
    frame2 = frame.assign(phash2=to_signed(second))
    con.execute("CREATE TABLE hashes2 AS SELECT image_id, phash, phash2, is_new FROM frame2")
    return con, ids, hashes, is_new


def brute_force(ids: list[str], hashes: np.ndarray, radius: int) -> set[tuple[str, str, int]]:
    dist = hamming(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(dist <= radius, k=1))
    return {(min(ids[a], ids[b]), max(ids[a], ids[b]), int(dist[a, b])) for a, b in zip(i, j)}


def as_set(frame: pd.DataFrame) -> set[tuple[str, str, int]]:
    return set(zip(frame["a"], frame["b"], frame["distance"].astype(int)))


def test_band_layout_tiles_all_64_bits() -> None:
    for radius in range(64):
        layout = band_layout(radius)
        assert len(layout) == radius + 1
        assert sum(width for _, width in layout) == 64
        assert [shift for shift, _ in layout] == list(np.cumsum([0] + [w for _, w in layout[:-1]]))
    with pytest.raises(ValueError):
        band_layout(64)
    assert band_layout(10, 4) == [(0, 16), (16, 16), (32, 16), (48, 16)]
    with pytest.raises(ValueError):
        band_layout(3, 5)  # more bands than radius + 1 would need


def test_search_plan_widens_bands_as_the_table_grows(hash_table) -> None:
    small, large = search_plan(10, 500), search_plan(10, 100_000)
    assert small == (band_layout(10), 0)  # classic banding: no flips for a few hundred hashes
    assert len(large[0]) < 11 and large[1] == 10 // len(large[0]) > 0
    assert search_plan(0, 10**6) == ([(0, 64)], 0)
    with pytest.raises(ValueError, match="probes per hash"):
        candidate_pairs(hash_table[0], "hashes", 7, bands=1)  # C(64, <=7) flips: refused, not enumerated


@pytest.mark.parametrize(("radius", "bands"), [(3, 2), (6, 3), (8, 4), (10, 4), (10, 6), (10, 11), (2, 1)])
def test_multi_index_search_equals_all_pairs_for_any_band_count(hash_table, radius: int, bands: int) -> None:
    con, ids, hashes, is_new = hash_table
    want = brute_force(ids, hashes, radius)
    got = candidate_pairs(con, "hashes", radius, new_only=False, bands=bands)
    assert as_set(got) == want and len(got) == len(want)
    new = {i for i, flag in zip(ids, is_new) if flag}
    incremental = candidate_pairs(con, "hashes", radius, new_only=True, bands=bands)
    assert as_set(incremental) == {p for p in want if p[0] in new or p[1] in new}
    # Wider bands with flips examine fewer row pairs than radius + 1 exact bands (the point of them).
    if bands < radius + 1 and radius >= 8:
        assert band_collisions(con, "hashes", radius, new_only=True, bands=bands) < band_collisions(
            con, "hashes", radius, new_only=True, bands=radius + 1)


@pytest.mark.parametrize("radius", range(11))
def test_banded_search_equals_all_pairs(hash_table, radius: int) -> None:
    con, ids, hashes, _ = hash_table
    got = candidate_pairs(con, "hashes", radius, new_only=False)
    want = brute_force(ids, hashes, radius)
    assert len(want) > 0
    assert as_set(got) == want
    assert len(got) == len(want)  # one row per pair even when several bands agree
    assert (got["a"] < got["b"]).all()


def test_crop_channel_adds_exactly_the_pairs_near_in_both_hashes(hash_table) -> None:
    con, ids, hashes, is_new = hash_table
    second = hashes ^ (hashes >> np.uint64(3))
    second[::7] = 0
    radius, crop_radius, crop_phash_radius = 4, 8, 16
    want = brute_force(ids, hashes, radius)
    loose = brute_force(ids, hashes, crop_phash_radius)
    keep = second != 0
    kept_ids = [i for i, k in zip(ids, keep) if k]
    near2 = {(a, b) for a, b, _ in brute_force(kept_ids, second[keep], crop_radius)}
    want |= {p for p in loose if (p[0], p[1]) in near2}
    got = candidate_pairs(con, "hashes2", radius, new_only=False, crop_radius=crop_radius,
                          crop_phash_radius=crop_phash_radius)
    assert as_set(got) == want and len(got) == len(want)
    assert (got["crop_only"] == (got["distance"] > radius)).all() and got["crop_only"].any()
    new = {i for i, flag in zip(ids, is_new) if flag}
    incremental = candidate_pairs(con, "hashes2", radius, new_only=True, crop_radius=crop_radius,
                                  crop_phash_radius=crop_phash_radius)
    assert as_set(incremental) == {p for p in want if p[0] in new or p[1] in new}
    # Without the column (or with the channel switched off) only the pHash channel runs.
    assert as_set(candidate_pairs(con, "hashes2", radius, new_only=False, crop_radius=None)) == \
        brute_force(ids, hashes, radius)


def test_ubigint_column_gives_the_same_pairs(hash_table) -> None:
    con, ids, hashes, _ = hash_table
    keep = to_signed(hashes) >= 0
    want = brute_force([i for i, k in zip(ids, keep) if k], hashes[keep], 6)
    assert as_set(candidate_pairs(con, "hashes_u", 6, new_only=False)) == want


def test_incremental_mode_skips_only_old_vs_old(hash_table) -> None:
    con, ids, hashes, is_new = hash_table
    new = {i for i, flag in zip(ids, is_new) if flag}
    everything = brute_force(ids, hashes, 8)
    got = as_set(candidate_pairs(con, "hashes", 8, new_only=True))
    assert got == {p for p in everything if p[0] in new or p[1] in new}
    kinds = {(p[0] in new) + (p[1] in new) for p in got}
    assert kinds == {1, 2}  # new-vs-old and new-vs-new both found
    assert any(p[0] not in new and p[1] not in new for p in everything)  # ...and old-vs-old existed


# ---- confirmation on real images -------------------------------------------------------------------


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((round(pil.width * factor), round(pil.height * factor)), Image.Resampling.BICUBIC))


def crop(image: np.ndarray, frac: float, side: str) -> np.ndarray:
    h, w = image.shape[:2]
    cy, cx = max(1, int(frac * h)), max(1, int(frac * w))
    return {"tl": image[cy:, cx:], "br": image[: h - cy, : w - cx], "mid": image[cy // 2 : h - cy + cy // 2, cx // 2 : w - cx + cx // 2]}[side]


def brightness(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(image * gain + offset, 0, 255).round().astype(np.uint8)


def copies(image: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "jpeg75": jpeg(image, 75), "jpeg95": jpeg(image, 95),
        "half": resize(image, 0.5), "double": resize(image, 2.0), "x0.7": resize(image, 0.7),
        "crop5tl": crop(image, 0.05, "tl"), "crop5br": crop(image, 0.05, "br"), "crop3mid": crop(image, 0.03, "mid"),
        "bright+15": brightness(image, 1.15, 0), "dark-15": brightness(image, 0.85, 0), "contrast": brightness(image, 1.1, -20),
    }


@pytest.fixture(scope="module")
def photo_tiles() -> list[np.ndarray]:
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.camera()]
    return [np.ascontiguousarray(p[y : y + 96, x : x + 96]) for p in photos for y, x in [(100, 100), (200, 250)]]


def test_modified_copies_of_photos_and_faces_are_confirmed(photo_tiles) -> None:
    faces = [np.rint(f * 255).astype(np.uint8) for f in skimage.data.lfw_subset()[:4]]
    scores = {(i, name): similarity(original, copy)
              for i, original in enumerate(photo_tiles + faces) for name, copy in copies(original).items()}
    low = {k: round(v, 3) for k, v in scores.items() if v < DEFAULT_SIMILARITY}
    assert low == {}
    assert np.median(list(scores.values())) > 0.99


def test_distinct_images_score_below_threshold(photo_tiles) -> None:
    pairs = [(a, b) for i, a in enumerate(photo_tiles) for b in photo_tiles[i + 1 :]]
    assert max(similarity(a, b) for a, b in pairs) < 0.8
    faces = [np.rint(f * 255).astype(np.uint8) for f in skimage.data.lfw_subset()[:40]]
    face_scores = [similarity(a, b) for i, a in enumerate(faces) for b in faces[i + 1 : i + 6]]
    assert max(face_scores) < DEFAULT_SIMILARITY


def test_confirm_pairs_keeps_copies_and_drops_same_class_digits() -> None:
    digits, labels, _ = load_digits_uint8()
    rng = np.random.default_rng(3)
    images = {f"d{i}": digits[i] for i in range(300)}
    same_class = [(f"d{i}", f"d{j}") for i in range(300) for j in range(i + 1, 300) if labels[i] == labels[j]]
    picked = [same_class[k] for k in rng.choice(len(same_class), 400, replace=False)]
    for i in range(50):  # JPEG and brightness copies of digits keep the 8x8 grid: must be confirmed
        images[f"j{i}"] = jpeg(digits[i], 85)
        images[f"b{i}"] = brightness(digits[i], 0.9, 5)
    planted = [(f"d{i}", f"j{i}") for i in range(50)] + [(f"b{i}", f"d{i}") for i in range(50)]
    pairs = pd.DataFrame(planted + picked, columns=["a", "b"])
    confirmed = confirm_pairs(pairs, images.__getitem__)
    kept = set(zip(confirmed["a"], confirmed["b"]))
    assert kept >= set(planted)
    false_rate = len(kept - set(planted)) / len(picked)
    assert false_rate <= 0.01  # measured 0..0.5% on same-class digit pairs
    assert (confirmed["similarity"] >= 0.99).all()


def test_resized_small_digits_are_reproduced_and_distinct_ones_are_not() -> None:
    digits, labels, _ = load_digits_uint8()
    rng = np.random.default_rng(5)
    methods = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS]
    images, planted = {}, []
    for i in range(60):
        side = int(rng.integers(4, 17))
        if side == 8:
            side = 12
        images[f"d{i}"] = digits[i]
        images[f"r{i}"] = np.asarray(Image.fromarray(digits[i]).resize((side, side), methods[i % 3]))
        planted.append((f"d{i}", f"r{i}"))
    assert min(reproduction_similarity(images[a], images[b]) for a, b in planted) >= REPRO_SIMILARITY
    # A resized copy of one digit against other digits of its class: not a reproduction.
    distinct = [(f"d{j}", f"r{i}") for i in range(60) for j in range(60) if j != i and labels[i] == labels[j]]
    for j in range(60):
        images[f"d{j}"] = digits[j]
    pairs = pd.DataFrame(planted + distinct, columns=["a", "b"])
    confirmed = confirm_pairs(pairs, images.__getitem__)
    kept = set(zip(confirmed["a"], confirmed["b"]))
    assert len(kept & set(planted)) >= 0.95 * len(planted)
    assert len(kept - set(planted)) <= 0.01 * len(distinct)


def test_flat_images_match_only_flat_images() -> None:
    flat = np.full((30, 30), 90, np.uint8)
    assert similarity(flat, np.full((15, 15), 200, np.uint8)) == 1.0
    assert similarity(flat, skimage.data.camera()[:30, :30]) == 0.0


# ---- grouping --------------------------------------------------------------------------------------


def test_grouping_never_chains_and_first_seen_wins() -> None:
    """Exact pairs merge transitively (one image); near pairs join a class to a representative only when
    they link to that representative itself. The chain x ~ d ~ e(= d exactly) ~ a(= b exactly) ~ c used to
    fold all of them into x."""
    order = ["x", "c", "b", "a", "d", "e", "lonely"]
    exact = pd.DataFrame({"a": ["a", "e"], "b": ["b", "d"], "distance": [0, 0]})
    near = pd.DataFrame({"a": ["b", "a", "d"], "b": ["c", "e", "x"], "distance": [3, 5, 7]})
    groups = group_duplicates(order, exact, near)
    rows = {m: (r, k, d) for r, m, k, d in zip(groups["representative"], groups["member"], groups["kind"], groups["distance"])}
    # Classes in first-seen order: x, c, {b, a}, {d, e}. c has no link to x: its own group. {b, a} (root b)
    # links to c (b~c): joins c. {d, e} (root d) links to x (d~x) and to the member a (a~e): joins x only.
    assert rows == {"b": ("c", "near", 3), "a": ("c", "exact", 0), "d": ("x", "near", 7), "e": ("x", "exact", 0)}
    assert list(groups["member"]) == ["b", "a", "d", "e"]  # in first-seen order


def test_a_chain_of_near_pairs_stops_at_the_representative() -> None:
    """A ~ B and B ~ C confirmed, A and C not: C is not A's duplicate, so it keeps its own place; the
    strongest link to a representative wins when there are several."""
    groups = group_duplicates(["A", "B", "C"], None, [("A", "B", 4), ("B", "C", 3)])
    assert dict(zip(groups["member"], groups["representative"])) == {"B": "A"}
    evidence = pd.DataFrame({"a": ["P", "Q"], "b": ["R", "R"], "distance": [2, 9], "evidence": [0.09, 0.01]})
    best = group_duplicates(["P", "Q", "R"], None, evidence)
    assert dict(zip(best["member"], best["representative"])) == {"R": "Q"}
    assert group_sizes(best) == ({2: 1}, 2)


def test_two_groups_a_pair_links_are_compared_representative_to_representative() -> None:
    """A chain left apart names what to compare, not what to merge: A ~ B and B ~ C give (A, C); a later group
    (C leading D) linked to an earlier one through a member gives its representative against the earlier one;
    pairs within one group, and images no pair links, give nothing. Once (A, C) is confirmed, C joins A, D is
    left apart (its pair is with C, now a member) and is named against A in turn."""
    chain = [("A", "B", 4), ("B", "C", 3)]
    assert representative_checks(["A", "B", "C"], chain, group_duplicates(["A", "B", "C"], None, chain)) == [("A", "C")]
    order = ["A", "B", "C", "D", "lonely"]
    pairs = [("A", "B", 2), ("C", "D", 2), ("D", "B", 2)]
    groups = group_duplicates(order, None, pairs)
    assert dict(zip(groups["member"], groups["representative"])) == {"B": "A", "D": "C"}
    assert representative_checks(order, pairs, groups) == [("A", "C")]
    pairs.append(("A", "C", 1))  # confirmed
    groups = group_duplicates(order, None, pairs)
    assert dict(zip(groups["member"], groups["representative"])) == {"B": "A", "C": "A"}
    assert representative_checks(order, pairs, groups) == [("A", "D")]
    pairs.append(("A", "D", 1))
    assert representative_checks(order, pairs, group_duplicates(order, None, pairs)) == []


def test_grouping_prefers_the_direct_exact_link_and_rejects_unknown_ids() -> None:
    groups = group_duplicates(["r", "m"], [("r", "m")], [("r", "m", 4)])
    assert groups.to_dict("records") == [
        {"representative": "r", "member": "m", "kind": "exact", "distance": 0, "evidence": 0.0}
    ]
    two = group_duplicates(["p", "q", "s", "t"], None, [("q", "p", 2), ("t", "s", 1)])
    assert dict(zip(two["member"], two["representative"])) == {"q": "p", "t": "s"}
    with pytest.raises(ValueError):
        group_duplicates(["a"], [("a", "zz")], None)



def _sample_direct(gray, boxes):
    """The plain 2-D bilinear gather that sampling._sample must reproduce bit for bit: every sample is
    interpolated along x on its two rows, then along y, with weights in the image's float type."""
    from synthdata.dedup.sampling import WORK_SIZE

    h, w = gray.shape
    t = (np.arange(WORK_SIZE, dtype=np.float32) + 0.5) / WORK_SIZE
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t
    px = np.clip(xs * w - 0.5, 0, w - 1)
    py = np.clip(ys * h - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(px).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(py).astype(np.intp), max(h - 2, 0))
    fx = (px - x0).astype(gray.dtype)[:, None, :]
    fy = (py - y0).astype(gray.dtype)[:, :, None]
    x1 = np.minimum(x0 + 1, w - 1)[:, None, :]
    y1 = np.minimum(y0 + 1, h - 1)[:, :, None]
    x0, y0 = x0[:, None, :], y0[:, :, None]
    top = gray[y0, x0] * (1 - fx) + gray[y0, x1] * fx
    bottom = gray[y1, x0] * (1 - fx) + gray[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).reshape(len(boxes), -1)


def test_separable_sampling_is_bit_identical_to_the_direct_gather():
    from synthdata.dedup.sampling import _crop_boxes, _sample

    rng = np.random.default_rng(7)
    for h, w in [(64, 64), (17, 40), (8, 8), (2, 3), (128, 96)]:
        for dtype in (np.float32, np.float64):
            gray = (rng.random((h, w)) * 255).astype(dtype)
            for boxes in (_crop_boxes(), _crop_boxes()[:1], _crop_boxes()[[7, 0, 35, 7]]):
                got = _sample(gray, boxes)
                assert got.dtype == dtype
                assert np.array_equal(got, _sample_direct(gray, boxes))


def test_batched_sampling_equals_the_direct_gather_per_image():
    from synthdata.dedup.sampling import _crop_boxes, _sample, _Sampler

    rng = np.random.default_rng(8)
    stack = (rng.random((2, 3, 64, 64)) * 255).astype(np.float32)
    want = np.stack([[_sample_direct(g, _crop_boxes()) for g in row] for row in stack])
    assert np.array_equal(_sample(stack, _crop_boxes()), want)
    # A sampler reuses its buffers: a smaller batch after a larger one still gets exactly its own samples.
    sampler = _Sampler((64, 64), _crop_boxes())
    assert np.array_equal(sampler(stack.reshape(-1, 64, 64)), want.reshape(-1, *want.shape[2:]))
    assert np.array_equal(sampler(stack[1, :1]), want[1, :1])


def test_matrix_resampling_equals_pillow_resize_then_scipy_blur():
    from scipy import ndimage

    from synthdata.dedup.sampling import _BLUR_SIGMA, WORK_SIZE, _prefilter

    canvas = 2 * WORK_SIZE
    rng = np.random.default_rng(9)
    # Up- and downscaled with the bilinear filter (shorter side < canvas), shrunk with the box filter, an
    # axis left unchanged, degenerate, and past the matrix path's size limit.
    shapes = [(8, 8), (25, 25), (17, 40), (100, 30), (64, 64), (64, 100), (100, 70), (256, 200), (1, 9), (300, 280)]
    for h, w in shapes:
        gray = (rng.random((h, w)) * 255).astype(np.float32)
        method = Image.Resampling.BOX if min(h, w) >= canvas else Image.Resampling.BILINEAR
        resized = np.asarray(Image.fromarray(gray).resize((canvas, canvas), method))
        want = ndimage.gaussian_filter(resized, _BLUR_SIGMA, mode="nearest")
        got = _prefilter([gray])[0]
        assert got.dtype == np.float32 and got.shape == (canvas, canvas)
        assert np.abs(got - want).max() < 2e-4, (h, w)  # float32 rounding of values up to 255


def test_batched_confirmation_equals_pairwise_similarity_whatever_the_chunk_and_cache_sizes(monkeypatch, photo_tiles):
    from synthdata.dedup import confirm as near_dup

    digits, _, _ = load_digits_uint8()
    faces = [np.rint(f * 255).astype(np.uint8) for f in skimage.data.lfw_subset()[:6]]
    images = {f"t{i}": tile for i, tile in enumerate(photo_tiles)} | {f"f{i}": face for i, face in enumerate(faces)}
    images |= {f"c{i}_{name}": copy for i, tile in enumerate(photo_tiles[:3]) for name, copy in copies(tile).items()}
    images |= {f"d{i}": digits[i] for i in range(8)} | {f"r{i}": resize(digits[i], 1.5) for i in range(8)}
    images |= {"flat": np.full((30, 30), 90, np.uint8), "flat2": np.full((12, 20), 200, np.uint8)}
    ids = sorted(images)
    rng = np.random.default_rng(11)
    drawn = {tuple(sorted(rng.choice(ids, 2, replace=False))) for _ in range(400)}
    pairs = pd.DataFrame(sorted(drawn), columns=["a", "b"])
    pairs = pd.concat([pairs, pd.DataFrame({"a": ["d0", "d1", "flat", "c0_jpeg75"], "b": ["r0", "r1", "flat2", "t0"]})])
    pairs = pairs.drop_duplicates().reset_index(drop=True).assign(crop_only=lambda f: np.arange(len(f)) % 5 == 0)
    loads = []

    def load(image_id):
        loads.append(image_id)
        return images[image_id]

    def confirm(**thresholds):
        loads.clear()
        return confirm_pairs(pairs, load, **thresholds)

    everything = {"threshold": -2.0, "small_threshold": -2.0, "crop_threshold": -2.0}
    scores, confirmed = confirm(**everything), confirm()
    assert len(loads) == len(set(pairs["a"]) | set(pairs["b"]))  # each image loaded once
    want = [similarity(images[a], images[b]) for a, b in zip(pairs["a"], pairs["b"])]
    assert np.allclose(scores["similarity"], want, atol=1e-5)
    assert 0 < len(confirmed) < len(pairs)
    assert set(zip(confirmed["a"], confirmed["b"])) >= {("d0", "r0"), ("flat", "flat2")}

    # A cache of 5 images, 2 owners / 3 pair ends per chunk: images are evicted and loaded again, owners are
    # split over chunks, and the outcome is the same.
    for name, value in [("_PREPARED_CACHE", 5), ("_CHUNK_OWNERS", 2), ("_CHUNK_ENDS", 3), ("_CROP_BATCH", 1)]:
        monkeypatch.setattr(near_dup, name, value)
    small_scores, small_confirmed = confirm(**everything), confirm()
    assert len(loads) > len(set(pairs["a"]) | set(pairs["b"]))
    assert np.allclose(small_scores["similarity"], scores["similarity"], atol=1e-5)
    assert list(zip(small_confirmed["a"], small_confirmed["b"])) == list(zip(confirmed["a"], confirmed["b"]))


def test_images_loaded_ahead_are_bounded_and_a_failing_load_still_fails_the_call(monkeypatch, photo_tiles):
    from synthdata.dedup import confirm as near_dup

    images = {f"t{i}": tile for i, tile in enumerate(photo_tiles)}
    ids = sorted(images)
    pairs = pd.DataFrame([(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]], columns=["a", "b"])
    for name, value in [("_PREPARED_CACHE", 6), ("_CHUNK_OWNERS", 2), ("_CHUNK_ENDS", 4)]:
        monkeypatch.setattr(near_dup, name, value)
    everything = {"threshold": -2.0, "small_threshold": -2.0, "crop_threshold": -2.0}
    unbounded = confirm_pairs(pairs, images.__getitem__, **everything)

    held = []
    real_load_all = near_dup._LoadAhead._load_all

    def spy(self, codes):
        out = real_load_all(self, codes)
        held.append(sum(image.nbytes for image in out.values()))
        return out

    monkeypatch.setattr(near_dup._LoadAhead, "_load_all", spy)
    monkeypatch.setattr(near_dup._LoadAhead.__init__, "__defaults__", (1,))  # at most one image ahead
    bounded = confirm_pairs(pairs, images.__getitem__, **everything)
    assert held and max(held) <= max(image.nbytes for image in images.values())
    assert np.array_equal(bounded["similarity"], unbounded["similarity"])

    def failing(image_id):
        if image_id == ids[-1]:  # inline or ahead, the error must reach the caller
            raise FileNotFoundError(f"store object for {image_id} is gone")
        return images[image_id]

    with pytest.raises(FileNotFoundError, match="is gone"):
        confirm_pairs(pairs, failing, **everything)


def test_candidate_search_fits_a_small_memory_limit() -> None:
    # 150 clusters of 100 near-identical hashes: 742,500 candidate pairs between 64-character ids. Keyed by
    # the ids themselves the DISTINCT + sort needed more than 64 MB and DuckDB failed with "Out of Memory";
    # on dense integer keys it fits in 32 MB.
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 2**64, 150, dtype=np.uint64, endpoint=False)
    hashes = np.repeat(centres, 100) ^ (rng.integers(0, 8, 15_000, dtype=np.uint64))
    ids = [f"{i:064x}" for i in range(len(hashes))]
    frame = pd.DataFrame({"image_id": ids, "phash": to_signed(hashes), "is_new": True})
    con = duckdb.connect(config={"memory_limit": "32MB"})
    con.execute("CREATE TABLE h AS SELECT * FROM frame")
    pairs = candidate_pairs(con, "h", 4, crop_radius=None)
    assert len(pairs) == 150 * 100 * 99 // 2
    assert (pairs["a"] < pairs["b"]).all() and pairs["a"].is_monotonic_increasing
    first = pairs.iloc[0]
    assert (first["a"], first["b"]) == (ids[0], ids[1]) and first["distance"] == hamming(hashes[0], hashes[1])
