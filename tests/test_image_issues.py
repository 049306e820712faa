"""Image-quality flags on real images: planted blur, exposure, flatness, odd shapes and grayscale are found;
a clean set flags almost nothing, because thresholds come from the set itself."""

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import ndimage

from synthdata.curation.image_issues import flag_images, score_images


def flagged(images, widths=None, heights=None, **kw) -> dict[str, set[int]]:
    widths = widths or [np.asarray(i).shape[1] for i in images]
    heights = heights or [np.asarray(i).shape[0] for i in images]
    flags, _ = flag_images(score_images(images, widths, heights), **kw)
    return {issue: set(rows["row"]) for issue, rows in flags.groupby("issue")}


def colour_tiles() -> list[np.ndarray]:
    """64x64 tiles of three colourful real photos."""
    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.immunohistochemistry()]
    return [p[y : y + 64, x : x + 64] for p in photos for y in range(0, p.shape[0] - 63, 64) for x in range(0, p.shape[1] - 63, 64)]


def test_a_clean_digit_set_flags_almost_nothing(digits):
    images, _, _ = digits
    flags = flagged(list(images))
    assert sum(len(v) for v in flags.values()) <= 0.002 * len(images)


def test_planted_blur_dark_light_and_flat_digits_are_flagged(digits):
    images, _, _ = digits
    x = images.astype(np.float32)
    planted = {
        "blurry": [ndimage.gaussian_filter(x[i], 1.0) for i in range(0, 10)],
        "dark": [x[i] * 0.3 for i in range(10, 20)],
        "light": [x[i] * 0.3 + 178 for i in range(20, 30)],
        "near_constant": [x[i] * 0.02 + 100 for i in range(30, 40)],
    }
    bad = np.concatenate([np.stack(v) for v in planted.values()]).round().clip(0, 255).astype(np.uint8)
    dataset = list(bad) + list(images[40:])
    flags = flagged(dataset)
    for n, issue in enumerate(planted):
        assert set(range(10 * n, 10 * n + 10)) <= flags[issue], issue
    clean_flagged = set().union(*flags.values()) - set(range(40))
    assert len(clean_flagged) <= 0.002 * len(images)


def test_constant_images_are_low_information_and_near_constant(digits):
    images, _, _ = digits
    dataset = [np.full((8, 8), v, np.uint8) for v in (0, 90, 255)] + list(images)
    flags = flagged(dataset)
    assert {0, 1, 2} <= flags["low_information"] and {0, 1, 2} <= flags["near_constant"]


def test_odd_sizes_and_aspect_ratios_are_flagged_against_the_set(digits):
    images, _, _ = digits
    pil = [Image.fromarray(images[i]) for i in range(3)]
    odd = [
        np.asarray(pil[0].resize((40, 8))),  # 5:1
        np.asarray(pil[1].resize((64, 64))),  # 8x the set's side
        np.asarray(pil[2].resize((16, 16))),  # 2x: within the floor, not odd
    ]
    flags = flagged(odd + list(images[3:300]))
    assert 0 in flags["odd_aspect_ratio"] and 1 in flags["odd_size"]
    assert 2 not in flags.get("odd_size", set()) and 2 not in flags.get("odd_aspect_ratio", set())


def test_grayscale_images_are_flagged_inside_a_colour_set_only():
    tiles = colour_tiles()
    gray_l = [np.asarray(Image.fromarray(t).convert("L")) for t in tiles[:3]]
    gray_rgb = [np.repeat(g[..., None], 3, axis=2) for g in gray_l]
    flags = flagged(gray_l + gray_rgb + tiles[3:])
    assert set(range(6)) <= flags["grayscale"]
    assert len(flags["grayscale"] - set(range(6))) <= 1  # at most a near-colourless tile of the photos
    # a grayscale set is not a problem
    assert "grayscale" not in flagged([np.asarray(Image.fromarray(t).convert("L")) for t in tiles])


def test_flags_are_deterministic_and_carry_their_threshold(digits):
    images, _, _ = digits
    dataset = [np.zeros((8, 8), np.uint8)] + list(images[:500])
    scores = score_images(dataset, [8] * 501, [8] * 501)
    a, summary = flag_images(scores)
    b, _ = flag_images(score_images(dataset, [8] * 501, [8] * 501))
    assert a.equals(b)
    row = a[(a["row"] == 0) & (a["issue"] == "near_constant")].iloc[0]
    assert row["score"] < row["threshold"] == pytest.approx(summary["near_constant"]["low"])


def test_a_looser_z_never_flags_fewer(digits):
    images, _, _ = digits
    scores = score_images(list(images), [8] * len(images), [8] * len(images))
    strict, _ = flag_images(scores, z=3.5)
    loose, _ = flag_images(scores, z=1.0)
    assert len(loose) >= len(strict)
    with pytest.raises(ValueError, match="z must be positive"):
        flag_images(scores, z=0)
