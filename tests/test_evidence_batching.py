"""Copy evidence of pairs of many sizes is computed in padded batches: the same numbers as one pair at a
time on canvases of the images' own sizes, and large images cost a bounded frame, not native-scale work."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

from synthdata.dedup import evidence
from synthdata.dedup.evidence import copy_distance, copy_evidence

FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def _photo_crops(n: int, seed: int) -> list[np.ndarray]:
    """Real photo content at many sizes and aspect ratios (24..90 px), grey and colour."""
    photos = [data.astronaut(), data.coffee(), data.chelsea(), np.asarray(data.camera()), np.asarray(data.brick())]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = (int(v) for v in rng.integers(24, 91, size=2))
        src = int(rng.integers(1, 4))
        y, x = int(rng.integers(0, photo.shape[0] - h * src)), int(rng.integers(0, photo.shape[1] - w * src))
        crop = Image.fromarray(photo[y : y + h * src, x : x + w * src]).resize((w, h), Image.Resampling.BILINEAR)
        out.append(np.asarray(crop))
    return out


def _mixed_pairs(seed: int = 0) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """Copies (resized with each standard filter, cropped 1-4 px, JPEG) and distinct look-alikes, all of
    different sizes."""
    images = _photo_crops(24, seed)
    rng = np.random.default_rng(seed)
    pairs = []
    for i, image in enumerate(list(images)):
        h, w = image.shape[:2]
        kind = i % 3
        if kind == 0:  # resized copy
            factor = float(rng.uniform(0.6, 1.6))
            method = FILTERS[i % 2 + (i % 5 == 0)]
            size = (max(8, round(w * factor)), max(8, round(h * factor)))
            copy = np.asarray(Image.fromarray(image).resize(size, method))
        elif kind == 1:  # cropped copy: sizes close enough for the pixel-scale alignment
            t, b, left, r = (int(v) for v in rng.integers(0, 3, size=4))
            copy = np.ascontiguousarray(image[t : h - b - 1, left : w - r])
        else:  # re-encoded and cropped
            buf = io.BytesIO()
            Image.fromarray(image[1:, 2:]).save(buf, format="JPEG", quality=90)
            copy = np.asarray(Image.open(buf))
        images.append(copy)
        pairs.append((i, len(images) - 1))
    pairs += [(i, (i + 7) % 24) for i in range(24)]  # distinct images, of other sizes
    return pairs, images


def test_batched_mixed_size_scoring_equals_one_pair_at_a_time_on_unpadded_canvases(monkeypatch) -> None:
    pairs, images = _mixed_pairs()
    shapes = {(images[a].shape[:2], images[b].shape[:2]) for a, b in pairs}
    assert len(shapes) > 40  # nearly every pair is a size pair of its own
    batched, batched_corr = copy_evidence(pairs, images.__getitem__)
    # One pair at a time, each on canvases of exactly its images' sizes (no padding at all).
    monkeypatch.setattr(evidence, "_PAD_STEP", 1)
    single = [copy_evidence([pair], images.__getitem__) for pair in pairs]
    distance = np.array([d[0] for d, _ in single])
    corr = np.array([c[0] for _, c in single])
    np.testing.assert_allclose(batched, distance, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(batched_corr, corr, atol=1e-5)
    # And the numbers mean something: copies close, distinct look-alikes far (statistic v4: copies at most 0.18,
    # distinct pairs at least 1.2; under v3 0.15 and 0.3).
    assert np.all(batched[:24] < 0.25)
    assert np.all(batched[24:] > 0.6)


def test_batched_screen_drops_the_same_pairs_as_one_at_a_time(monkeypatch) -> None:
    pairs, images = _mixed_pairs(seed=1)
    batched, _ = copy_evidence(pairs, images.__getitem__, screen=0.9)
    monkeypatch.setattr(evidence, "_PAD_STEP", 1)
    single = np.array([copy_evidence([pair], images.__getitem__, screen=0.9)[0][0] for pair in pairs])
    assert np.array_equal(np.isfinite(batched), np.isfinite(single))
    assert np.isinf(batched).sum() >= 10  # the screen did drop distinct pairs
    np.testing.assert_allclose(batched[np.isfinite(batched)], single[np.isfinite(single)], rtol=1e-4, atol=2e-6)


def test_padded_residual_equals_residual_of_the_views_alone() -> None:
    images = _photo_crops(8, seed=2)
    rng = np.random.default_rng(2)
    xs = [evidence._rgb(im) for im in images]
    ys = [np.clip(x * 1.1 - 9 + rng.normal(0, 3, x.shape), 0, 255).astype(np.float32) for x in xs]
    h, w = np.array([x.shape[0] for x in xs]), np.array([x.shape[1] for x in xs])
    height, width = int(h.max()) + 5, int(w.max()) + 3
    padded = evidence._masked_residual(evidence._canvas(xs, height, width), evidence._canvas(ys, height, width), h, w)
    alone = np.array([evidence.residual(x[None], y[None])[0] for x, y in zip(xs, ys)])
    np.testing.assert_allclose(padded, alone, rtol=1e-4)


def test_fft_offset_search_matches_the_offset_by_offset_search() -> None:
    """Crops and shifts of several sizes in one batch: the same best offset's correlation and distance as
    :func:`_pixel_scale_distance` (summed-area tables, one offset at a time) on each pair alone."""
    images = _photo_crops(10, seed=3)
    large, small = [], []
    rng = np.random.default_rng(3)
    for image in images:
        h, w = image.shape[:2]
        t, b, left, r = (int(v) for v in rng.integers(0, 4, size=4))
        large.append(evidence._rgb(image))
        small.append(evidence._rgb(image[t : h - b, left : w - r]))
    distance, corr = evidence._pixel_scale_batch(large, small, screen=-1.0)
    for i, (big, little) in enumerate(zip(large, small)):
        ref_distance, ref_corr = evidence._pixel_scale_distance(little[None], big[None], screen=-1.0)
        assert corr[i] == pytest.approx(float(ref_corr[0]), abs=1e-5)
        assert distance[i] == pytest.approx(float(ref_distance[0]), rel=1e-4, abs=1e-6)
    assert np.all(distance < 0.02)  # crops are exact transforms up to the blur of nothing


def _large_photo(side: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((side[1], side[0]), Image.Resampling.BICUBIC))


def test_the_frame_of_a_large_image_is_the_gaussian_and_box_reduction() -> None:
    """The matrix form of the frame reduction gives what the Gaussian prefilter and Pillow's BOX give."""
    image = _large_photo((900, 700))
    frame = evidence._frame(image)
    shape = frame.shape[:2]
    sigma = 0.5 * max(image.shape[0] / shape[0], image.shape[1] / shape[1])
    blurred = ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0), mode="nearest")
    reference = np.stack([np.asarray(Image.fromarray(blurred[..., c]).resize(shape[::-1], Image.Resampling.BOX))
                          for c in range(3)], axis=-1)  # fmt: skip
    assert max(shape) == evidence.GRID
    np.testing.assert_allclose(frame, reference, atol=1e-3)


def test_a_large_image_pair_is_confirmed_on_a_bounded_frame() -> None:
    """A 3000x4000 photo and its crop and re-encode: confirmed as copies, a different photo not, and no
    float copy of the full image is ever made (the peak traced memory stays under one 48 MB float plane)."""
    image = _large_photo((3000, 4000))
    buf = io.BytesIO()
    Image.fromarray(image[2:, 1:]).save(buf, format="JPEG", quality=85)
    copy = np.asarray(Image.open(buf))
    other = np.asarray(Image.fromarray(data.coffee()).resize((4000, 3000), Image.Resampling.BICUBIC))
    images = [image, copy, other]
    tracemalloc.start()
    try:
        distance, _ = copy_evidence([(0, 1), (0, 2)], images.__getitem__)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert distance[0] < 0.05
    assert distance[1] > 0.3
    assert peak < 3000 * 4000 * 4  # the old prefilter held two float32 RGB copies (288 MB)


def test_copy_distance_of_a_grey_large_image_and_its_colour_twin() -> None:
    """Grey images are reduced once and repeated: the same frame as their three-channel version."""
    grey = np.asarray(Image.fromarray(_large_photo((1200, 900))).convert("L"))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(evidence._frame(grey), evidence._frame(rgb), atol=1e-3)
    assert copy_distance(grey, rgb) == pytest.approx(0.0, abs=1e-5)


def test_scores_do_not_depend_on_the_number_of_threads(monkeypatch) -> None:
    """Batches are formed before any is scored, so two threads give bit-identical numbers to one."""
    pairs, images = _mixed_pairs(seed=4)
    monkeypatch.setattr(evidence, "_THREADS", 2)
    two = copy_evidence(pairs, images.__getitem__, screen=0.5)
    monkeypatch.setattr(evidence, "_THREADS", 1)
    one = copy_evidence(pairs, images.__getitem__, screen=0.5)
    assert np.array_equal(two[0], one[0]) and np.array_equal(two[1], one[1])


def _grey_pairs() -> tuple[list[tuple[int, int]], list[np.ndarray], list]:
    """Grey pairs of one and of two shapes (copies and distinct look-alikes), JPEG files with their encodings,
    and a binary drawing whose few unclipped pixels decide the fit."""
    from synthdata.dedup.codec import lossy_file

    pairs, images = _mixed_pairs(seed=5)
    images = [np.asarray(Image.fromarray(im).convert("L")) if im.ndim == 3 else im for im in images]
    codes: list = [None] * len(images)
    for i in range(8):  # same-shape JPEG copies: codec views
        copy, codes_i = lossy_file(images[i], "JPEG", 85)
        images.append(copy)
        codes.append(codes_i)
        pairs.append((i, len(images) - 1))
    pairs += [(i, i + 1) for i in range(len(images) - 9, len(images) - 1)]  # distinct
    horse = np.where(data.horse(), 255, 0).astype(np.uint8)  # a silhouette: black and white, nothing between
    small = np.array(Image.fromarray(horse).resize((27, 27), Image.Resampling.NEAREST))
    small[[5, 9, 14, 20, 22], [4, 17, 8, 12, 21]] = 218  # five pixels unclipped: fewer than 8 values on one channel
    images += [small, np.ascontiguousarray(small[1:, :26])]
    codes += [None, None]
    pairs.append((len(images) - 2, len(images) - 1))
    return pairs, images, codes


def test_grey_pairs_are_scored_on_one_channel_as_on_three(monkeypatch) -> None:
    pairs, images, codes = _grey_pairs()
    one = copy_evidence(pairs, images.__getitem__, encoding=codes.__getitem__)
    monkeypatch.setattr(evidence, "_is_grey", lambda image: False)  # every pair on three equal channels
    three = copy_evidence(pairs, images.__getitem__, encoding=codes.__getitem__)
    np.testing.assert_allclose(one[0], three[0], rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(one[1], three[1], atol=1e-5)
    assert np.all(one[0][-17:-9] == 0) and np.all(one[0][-9:-1] > 0.6)  # JPEG copies (codec views), distinct pairs


def test_codec_views_do_not_depend_on_the_number_of_threads(monkeypatch) -> None:
    pairs, images, codes = _grey_pairs()
    monkeypatch.setattr(evidence, "_CODEC_BLOCK", 3)  # several blocks
    monkeypatch.setattr(evidence, "_CODEC_CHUNK", 4)  # and several scored chunks per shape
    monkeypatch.setattr(evidence, "_THREADS", 2)
    two = copy_evidence(pairs, images.__getitem__, encoding=codes.__getitem__)
    monkeypatch.setattr(evidence, "_THREADS", 1)
    one = copy_evidence(pairs, images.__getitem__, encoding=codes.__getitem__)
    assert np.array_equal(two[0], one[0]) and np.array_equal(two[1], one[1])


@pytest.mark.parametrize(
    ("shape", "sigma"),
    [((6, 3, 40, 56), (0, 0, 0.5, 0.5)), ((6, 33, 20, 3), (0, 0.5, 0.5, 0)), ((4, 1, 1, 3), (0, 0.5, 0.5, 0)),
     ((3, 2, 7, 3), (0, 0.5, 0.5, 0)), ((2, 3, 150, 9), (0, 0, 0.5, 0.5)), ((2, 3, 5, 1), (0, 0, 1.5, 0.5))],
)  # fmt: skip
def test_the_matrix_blur_is_ndimages_gaussian_filter(shape: tuple[int, ...], sigma: tuple[float, ...]) -> None:
    """The residual's blur as matrix products (and ndimage's filter on long sides): the same numbers as
    ``gaussian_filter(mode="nearest")`` to float rounding, edges and one-pixel sides included."""
    stack = np.random.default_rng(5).normal(0, 30, shape).astype(np.float32)
    blurred = evidence._blur(stack, sigma)
    assert blurred.dtype == np.float32 and blurred.shape == stack.shape
    reference = ndimage.gaussian_filter(stack, sigma, mode="nearest")
    np.testing.assert_allclose(blurred, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_batched_resize_weights_are_pillows_weights_of_each_pair(monkeypatch) -> None:
    """Line maps of a batch built from weights computed together (and from a cache that is emptied when full)
    are the maps of each size pair alone: filter_weights in the corner, the last row repeated, zeros beyond."""
    from synthdata.dedup.resample import filter_weights

    rng = np.random.default_rng(6)
    n_in, n_out = rng.integers(1, 120, 40), rng.integers(1, 120, 40)
    n_out[:8] = n_in[:8]  # equal sides: the identity
    pad_in, pad_out = int(n_in.max()) + 3, int(n_out.max()) + 5
    monkeypatch.setattr(evidence, "_WEIGHT_CACHE_BYTES", 200_000)  # a few maps: evicted along the way
    monkeypatch.setattr(evidence, "_weight_cache", {})
    monkeypatch.setattr(evidence, "_weight_cache_bytes", [0])
    for method in FILTERS:
        for _ in range(2):  # computed, then (partly) from the cache
            maps = evidence._line_maps(n_in, n_out, method, pad_in, pad_out)
            for i, (a, b) in enumerate(zip(n_in.tolist(), n_out.tolist())):
                core = filter_weights(a, b, method).astype(np.float32)
                np.testing.assert_allclose(maps[i, :b, :a], core, rtol=0, atol=1e-7)
                assert np.array_equal(maps[i, b:, :a], np.broadcast_to(maps[i, b - 1, :a], (pad_out - b, a)))
                assert not maps[i, :, a:].any()


def test_pixel_scale_search_on_the_callers_luma_canvases_is_the_same() -> None:
    """:func:`_pixel_scale_batch` given the lumas of the canvases it would make gives the same numbers."""
    images = _photo_crops(8, seed=7)
    rng = np.random.default_rng(7)
    large, small = [], []
    for image in images:
        h, w = image.shape[:2]
        t, b, left, r = (int(v) for v in rng.integers(0, 4, size=4))
        large.append(evidence._rgb(image))
        small.append(evidence._rgb(image[t : h - b, left : w - r]))
    canvases = []
    for views in (small, large):
        canvas = np.zeros((len(views), 100, 100), np.float32)
        for i, view in enumerate(views):
            canvas[i, : view.shape[0], : view.shape[1]] = view.mean(axis=2)
        canvases.append(canvas)
    given = evidence._pixel_scale_batch(large, small, -1.0, (canvases[0], canvases[1]))
    made = evidence._pixel_scale_batch(large, small, -1.0)
    assert np.array_equal(given[0], made[0]) and np.array_equal(given[1], made[1])


def test_a_thin_image_and_its_crop_are_compared_on_the_summed_area_tables() -> None:
    """A shift of up to 5% of the long side exceeds a thin strip's short side: the pixel-scale search leaves
    such windows empty instead of reading past its tables (an IndexError before)."""
    strip = data.astronaut()[100:106, 50:300]
    assert copy_distance(strip, np.ascontiguousarray(strip[1:, 3:-2])) < 0.02
    other = np.random.default_rng(8).integers(0, 256, (5, 248, 3), dtype=np.uint8)
    assert copy_distance(strip, other) > 0.3
