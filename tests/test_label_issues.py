"""Label flags on real handwritten digits: planted label flips are found, clean labels are left alone."""

import numpy as np
import pandas as pd
import pytest

from synthdata.curation.label_issues import (
    find_mislabels,
    mislabel_rows,
    plant_label_flips,
    rare_class_rows,
    rare_classes,
)


def flip_labels(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return plant_label_flips(labels, rate, 10, seed)


def test_flipped_digit_labels_are_flagged_and_few_clean_ones_are(digits):
    images, labels, _ = digits
    noisy, flipped = flip_labels(labels, 0.04, seed=0)
    result = find_mislabels(images, noisy, 10, seed=0)
    found = result.flagged & flipped
    assert found.sum() >= 0.9 * flipped.sum()  # most flips flagged
    assert (result.flagged & ~flipped).sum() <= 0.02 * (~flipped).sum()  # few clean images flagged
    assert found.sum() >= 0.65 * result.flagged.sum()  # precision
    # the suggested label of a found flip is, almost always, the label it had before the flip
    assert (result.suggested[found] == labels[found]).mean() >= 0.95
    assert abs(result.noise_rate - 0.04) < 0.01  # estimated from the data alone


def test_clean_digit_labels_are_almost_never_flagged(digits):
    images, labels, _ = digits
    result = find_mislabels(images, labels, 10, seed=0)
    assert result.flagged.sum() <= 0.002 * len(labels)
    assert result.noise_rate < 0.005


def test_same_seed_same_flags_and_the_seed_moves_the_folds(digits):
    images, labels, _ = digits
    noisy, _ = flip_labels(labels, 0.03, seed=1)
    a, b = (find_mislabels(images, noisy, 10, seed=7) for _ in range(2))
    assert np.array_equal(a.flagged, b.flagged) and np.array_equal(a.self_confidence, b.self_confidence)
    c = find_mislabels(images, noisy, 10, seed=8)
    assert not np.array_equal(a.self_confidence, c.self_confidence)


def test_classes_too_small_to_learn_are_not_flagged_as_mislabels(digits):
    images, labels, _ = digits
    keep = np.flatnonzero(labels != 9)[:600].tolist() + np.flatnonzero(labels == 9)[:3].tolist()
    result = find_mislabels(images[keep], labels[keep], 10, seed=0)
    assert not result.flagged[labels[keep] == 9].any()
    single = find_mislabels(images[:20], np.zeros(20, np.int64), 1)
    assert single.skipped and not single.flagged.any()


def test_a_rare_class_is_flagged_and_a_balanced_set_is_not(digits):
    _, labels, _ = digits
    names = pd.Series([str(v) for v in labels])
    assert rare_classes(names) == {}
    rare_rows = names[(labels != 3) | (np.cumsum(labels == 3) <= 10)]
    rare = rare_classes(rare_rows)
    assert set(rare) == {"3"} and rare["3"] < 0.1
    rows = rare_class_rows([f"id{i}" for i in range(len(rare_rows))], list(rare_rows), rare)
    assert len(rows) == 10 and set(rows["kind"]) == {"class_imbalance"}


def test_mislabel_rows_name_given_and_suggested_labels(digits):
    images, labels, names = digits
    noisy, flipped = flip_labels(labels, 0.03, seed=0)
    result = find_mislabels(images, noisy, 10, seed=0)
    ids = [f"img{i}" for i in range(len(labels))]
    rows = mislabel_rows(ids, [names[v] for v in noisy], names, result)
    assert len(rows) == result.flagged.sum() and set(rows["kind"]) == {"mislabel"}
    assert (rows["label"] != rows["suggested_label"]).all()
    assert rows["score"].is_monotonic_increasing and rows["score"].max() <= result.cutoff


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_target_precision_outside_0_1_is_refused(digits, target):
    images, labels, _ = digits
    with pytest.raises(ValueError, match="target_precision"):
        find_mislabels(images[:50], labels[:50], 10, target_precision=target)


def test_hog_features_describe_shape_not_contrast_and_skip_images_too_small_for_a_block(digits):
    from synthdata.curation.label_issues import hog_features

    images, _, _ = digits
    big = np.kron(images[:50], np.ones((4, 4), np.uint8))  # 32x32 real digits: 7x7 blocks of 36 bins
    feats = hog_features(big)
    assert feats.shape == (50, 7 * 7 * 36)
    dimmer = hog_features((big // 2).astype(np.uint8))  # half the contrast, the same strokes
    assert np.abs(dimmer - feats).max() < 0.02
    assert np.abs(hog_features(big[::-1]) - feats[::-1]).max() == 0  # per image, independent of the batch
    assert hog_features(images[:5, :3, :3]).shape == (5, 0)  # 3x3: the pixel view alone speaks for it


def test_on_fashion_items_the_hog_view_lifts_flag_precision_that_pixels_alone_miss():
    """Fashion-MNIST (Debian package dataset-fashion-mnist): shirts, T-shirts, pullovers and coats look alike in
    pixels, so the pixel view alone flags many clean images; with the HOG view the flags reach 0.7 each way."""
    from synthdata.curation.label_issues import calibrated_cutoff, features, out_of_fold_probabilities
    from synthdata.datasets import load_fashion_mnist

    x, y, _ = load_fashion_mnist(split="test")
    x, y = x[:4000], y[:4000]
    noisy, flipped = flip_labels(y, 0.03, seed=0)
    ours = find_mislabels(x, noisy, 10, seed=0)
    hits = (ours.flagged & flipped).sum()
    assert hits >= 0.7 * ours.flagged.sum() and hits >= 0.7 * flipped.sum()

    pixel = out_of_fold_probabilities(features(x), noisy, 10, seed=0)
    cutoff, _, _ = calibrated_cutoff(pixel, noisy, 0.8)
    alone = (pixel[np.arange(len(noisy)), noisy] <= cutoff) & (pixel.argmax(1) != noisy)
    assert (alone & flipped).sum() < 0.7 * alone.sum()  # what the HOG view is for
