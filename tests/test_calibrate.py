"""The near-duplicate rule calibrated on the data set itself: distinct look-alikes stay apart where the fixed
correlation rule folded them, planted copies of every supported transform are still found, colour counts."""

from __future__ import annotations

from itertools import combinations

import duckdb
import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from synthdata.dedup.calibrate import (
    TRANSFORMS,
    NearDuplicateRule,
    choose_rule,
    measure_positives,
    nearest_distinct,
    plant_copy,
    plant_file,
    rule_fit,
    rule_from_pairs,
)
from synthdata.dedup.candidates import candidate_pairs
from synthdata.dedup.confirm import confirm_pairs, similarity
from synthdata.dedup.evidence import copy_distance, copy_evidence
from synthdata.dedup.phash import phash_and_crop_hashes, to_signed
from tests.conftest import logo_art


def calibrated(images: list[np.ndarray], labels: np.ndarray, sample: int, seed: int = 0, radius: int = 10):
    """Candidates (as curate finds them; radius 64: all pairs), their copy distances, and the rule
    calibrated from them."""
    ids = list(range(len(images)))
    if radius >= 64:
        pairs = pd.DataFrame(list(combinations(ids, 2)), columns=["a", "b"]).assign(distance=0)
    else:
        hashes, crop = phash_and_crop_hashes([Image.fromarray(i) for i in images])
        con = duckdb.connect()
        frame = pd.DataFrame({"image_id": [f"{i:06d}" for i in ids], "phash": to_signed(hashes),
                              "phash2": to_signed(crop), "is_new": True})  # fmt: skip
        con.execute("CREATE TABLE h AS SELECT * FROM frame")
        pairs = candidate_pairs(con, "h", radius, new_only=False)
    a, b = pairs["a"].astype(int).to_numpy(), pairs["b"].astype(int).to_numpy()
    positives = measure_positives(images[:: max(1, len(images) // sample)][:sample], seed)
    distance, _ = copy_evidence(list(zip(a, b)), images.__getitem__, positives.screen)
    rule, _ = rule_from_pairs(positives, a, b, distance, labels[a] != labels[b], ids, 0.001, True, seed)
    return pairs.assign(a=a, b=b), distance, rule


def folded_share(a: np.ndarray, b: np.ndarray, keep: np.ndarray, n: int) -> float:
    return len(set(a[keep]) | set(b[keep])) / n


def recall_of_fresh_copies(images: list[np.ndarray], rule: NearDuplicateRule, seed: int) -> dict[str, float]:
    """Planted copies drawn with another seed than the calibration's, judged by the rule (a JPEG or WebP copy
    with its file's encoding, as curation reads it from the file)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), 60, replace=False)
    originals = [images[i] for i in pick for _ in TRANSFORMS]
    kinds = [k for _ in pick for k in TRANSFORMS]
    planted = [plant_file(o, k, rng) for o, k in zip(originals, kinds)]
    n = len(originals)
    encodings = [None] * n + [code for _, code in planted]
    distance, _ = copy_evidence([(i, n + i) for i in range(n)], (originals + [c for c, _ in planted]).__getitem__,
                                rule.screen, encodings.__getitem__)  # fmt: skip
    kept = pd.Series(distance <= rule.threshold).groupby(kinds).mean()
    return kept.to_dict()


def test_on_fashion_items_the_calibrated_rule_keeps_distinct_look_alikes_the_fixed_rule_folded():
    """Fashion-MNIST (Debian package dataset-fashion-mnist): distinct garments photographed the same way.
    The fixed rule (correlation >= 0.95) folds a large share of 3,000 distinct images; the calibrated rule
    folds at most 0.5% of them and still keeps >= 95% of every kind of planted copy."""
    from synthdata.datasets import load_fashion_mnist

    try:
        x, y, _ = load_fashion_mnist(split="test")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    images, labels = list(x[:3000]), y[:3000]
    pairs, distance, rule = calibrated(images, labels, sample=150)
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    fixed = confirm_pairs(pairs, images.__getitem__, 0.95)
    fixed_share = len(set(fixed["a"]) | set(fixed["b"])) / len(images)
    calibrated_share = folded_share(a, b, distance <= rule.threshold, len(images))
    assert fixed_share > 0.3  # the failure the issue reported: distinct images folded by the fixed rule
    assert calibrated_share <= 0.005, (calibrated_share, rule)
    assert rule.est_false_rate <= 0.001
    recall = recall_of_fresh_copies(images, rule, seed=1)
    assert min(recall.values()) >= 0.95, recall


def test_on_faces_the_calibrated_rule_folds_far_fewer_distinct_images_and_keeps_planted_copies():
    """LFW faces and non-faces (scikit-image, 25x25), every pair compared: distinct faces reach correlation
    0.95-0.97."""
    images = [np.rint(f * 255).astype(np.uint8) for f in skimage.data.lfw_subset()]
    labels = np.array([0] * 100 + [1] * 100)
    pairs, distance, rule = calibrated(images, labels, sample=50, radius=64)
    fixed = confirm_pairs(pairs, images.__getitem__, 0.95)
    assert len(fixed) >= 15 and (labels[fixed["a"]] == labels[fixed["b"]]).all()
    assert (distance <= rule.threshold).sum() <= 2
    recall = recall_of_fresh_copies(images, rule, seed=7)
    assert min(recall.values()) >= 0.9, recall


def test_planted_copies_of_photographs_are_found_by_the_calibrated_rule():
    """Non-overlapping 64 px tiles of scikit-image's sample photographs (colour and grey)."""
    tiles, labels = [], []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "coins", "moon"):
        photo = getattr(skimage.data, name)()
        for y in range(0, photo.shape[0] - 63, 64):
            for x in range(0, photo.shape[1] - 63, 64):
                tile = np.ascontiguousarray(photo[y : y + 64, x : x + 64])
                grey = tile.mean(axis=2) if tile.ndim == 3 else tile  # (a flat blue sky has RGB std above 12)
                if grey.std() >= 12:  # near-flat patches (sky) are not meaningfully distinct
                    tiles.append(tile)
                    labels.append(name)
    _, _, rule = calibrated(tiles, np.array(labels), sample=60)
    recall = recall_of_fresh_copies(tiles, rule, seed=3)
    assert min(recall.values()) >= 0.95, (recall, rule)


def test_colour_counts_a_red_and_a_grey_button_are_not_copies():
    tile = skimage.data.astronaut()[180:260, 180:260]
    grey = np.asarray(Image.fromarray(tile).convert("L").convert("RGB"))
    red = grey.copy()
    red[..., 1:] = (red[..., 1:] * 0.35).astype(np.uint8)  # the same shape, tinted red
    assert similarity(red, grey) > 0.97  # luma alone cannot tell them apart
    assert copy_distance(red, grey) > 0.5
    brighter = np.clip(red.astype(int) + 20, 0, 255).astype(np.uint8)  # a brightness change is still a copy
    assert copy_distance(red, brighter) < 0.05


def test_the_chroma_fringe_of_a_re_encoded_colour_drawing_is_forgiven_and_grey_is_unchanged(monkeypatch):
    """JPEG and WebP keep chroma at half resolution, so a re-encoded copy of saturated line art (scikit-image's
    logo, 64 px on white) carries a colour fringe along every edge: the residual's chroma is blurred more than
    its luma. Scored with chroma blurred like luma, the same copies lie about twice as far. A grey image has
    no chroma: its distance is the same to the bit (and a red and a grey button still differ, above)."""
    from synthdata.dedup import evidence

    art = logo_art()
    grey = np.asarray(Image.fromarray(art).convert("L"))
    pairs = [(art, plant_copy(art, kind, np.random.default_rng(seed))) for kind in ("jpeg", "webp") for seed in (0, 1)]
    pairs.append((grey, plant_copy(grey, "jpeg", np.random.default_rng(0))))

    def distances() -> np.ndarray:
        images = [x for pair in pairs for x in pair]
        return evidence.copy_evidence([(2 * i, 2 * i + 1) for i in range(len(pairs))], images.__getitem__)[0]

    forgiven = distances()
    monkeypatch.setattr(evidence, "CHROMA_BLUR_SIGMA", evidence.BLUR_SIGMA)
    as_luma = distances()
    assert (as_luma[:-1] >= 1.8 * forgiven[:-1]).all(), (forgiven, as_luma)
    assert forgiven[:-1].max() < 0.15  # (statistic v4, the L8 mean: 0.125; 0.066 under v3)
    assert as_luma[-1] == forgiven[-1]


def test_a_small_changed_glyph_is_farther_than_re_encoded_copies(monkeypatch):
    """A re-encoded copy's residual is noise spread thin over every edge; a changed glyph's is concentrated in one
    place. scikit-image's logo at 64 px on white, JPEG and WebP copies against the same drawing with one small
    square painted over (6x6 or 5x5 px, black or mid-grey): under the L8 mean (statistic v4) every glyph lies at
    least twice as far as every copy. The root mean square (v3, power 2) puts the faint grey square barely
    beyond the copies, which is why distinct icons of one template sat as close as their JPEG copies."""
    from synthdata.dedup import evidence

    art = logo_art()
    copies = [plant_copy(art, kind, np.random.default_rng(seed)) for kind in ("jpeg", "webp") for seed in range(4)]

    def painted(y: int, x: int, side: int, value: int) -> np.ndarray:
        out = art.copy()
        out[y : y + side, x : x + side] = value
        return out

    glyphs = [painted(8, 8, 6, 0), painted(50, 50, 6, 0), painted(30, 4, 5, 0), painted(4, 40, 6, 128)]

    def margin() -> float:
        images = [art, *copies, *glyphs]
        d, _ = evidence.copy_evidence([(0, i) for i in range(1, len(images))], images.__getitem__)
        return float(d[len(copies) :].min() / d[: len(copies)].max())

    assert margin() > 2.0
    monkeypatch.setattr(evidence, "RESIDUAL_POWER", 2)
    monkeypatch.setattr(evidence, "_SQUARINGS", 1)
    assert margin() < 1.5


def test_the_distance_is_symmetric_and_zero_for_exact_transforms():
    tile = skimage.data.camera()[100:128, 200:228]  # up to evidence.GRID px, compared pixel for pixel
    shifted = plant_copy(tile, "shift", np.random.default_rng(0))
    assert copy_distance(tile, tile) == 0.0
    assert copy_distance(tile, tile[1:, 2:]) == 0.0  # a crop is an exact transform
    assert copy_distance(tile, shifted) == pytest.approx(copy_distance(shifted, tile), abs=1e-6)


def test_a_rule_round_trips_and_its_id_names_the_decision():
    rule = NearDuplicateRule(threshold=0.1, screen=0.9, target_false_rate=0.001, est_false_rate=0.0005,
                             recall={"jpeg": 1.0}, null_images=10, positives=6, seed=3)  # fmt: skip
    again = NearDuplicateRule.from_json(rule.to_json())
    assert again == rule and again.rule_id == rule.rule_id
    assert NearDuplicateRule.fixed(0.1).rule_id != NearDuplicateRule.fixed(0.11).rule_id
    with pytest.raises(ValueError, match="unknown transform"):
        plant_copy(np.zeros((8, 8), np.uint8), "sepia", np.random.default_rng(0))


def test_one_picture_under_two_labels_is_a_label_conflict_not_a_distinct_look_alike():
    """Desktop icon themes ship one artwork under two themes: a different-label pair at copy distance ~0. Counted
    as a known-distinct look-alike it pins the threshold at 0 and every re-encoded copy is missed."""
    photo = skimage.data.astronaut()
    tiles = [photo[y : y + 48, x : x + 48] for y in range(0, 480, 48) for x in range(0, 480, 48)]
    tiles = [t for t in tiles if t.mean(axis=2).std() > 8]
    labels = np.array([f"part{i % 7}" for i in range(len(tiles))] + ["elsewhere"])
    images = tiles + [tiles[3].copy()]  # the same pixels filed under another label (not byte-identical in a drop)
    _, _, rule = calibrated(images, labels, sample=64, radius=64)
    assert rule.label_conflicts == 1 and any("two labels" in w for w in rule.warnings)
    assert rule.threshold > 0.02, rule
    recall = recall_of_fresh_copies(tiles, rule, seed=5)
    assert recall["jpeg"] >= 0.9 and recall["brightness_contrast"] >= 0.9, recall

    # What the label-only null did: the conflict pair is the closest "distinct" look-alike and the rule collapses.
    positives = measure_positives(tiles[:: len(tiles) // 64][:64], 0)
    ids = list(range(len(images)))
    a, b = np.array(list(combinations(ids, 2))).T
    d, _ = copy_evidence(list(zip(a, b)), images.__getitem__, positives.screen)
    old_null = nearest_distinct(a, b, d, (labels[a] != labels[b]) | (d > np.quantile(positives.screened_distance, 0.95)), ids)
    assert choose_rule(positives, old_null, 0.001, True, 0).threshold <= 0.0


def test_a_rule_fit_flags_a_drop_its_copies_fall_outside_but_not_one_miss_of_a_tiny_run():
    """A rule whose threshold keeps hardly any re-encoded copy of photo tiles: judged on 12 tiles it falls
    short on resized and brightness-changed copies (and says so, naming them and the promise); judged on one
    tile, one miss per kind is sampling noise (FIT_MIN_MISSES), not a verdict. A rule wide enough for the copies
    fits. (JPEG and WebP copies are kept even by this rule: their codec views reproduce them exactly,
    synthdata.dedup.codec.)"""
    tiles = [skimage.data.astronaut()[y : y + 64, x : x + 64].copy() for y in range(0, 384, 128) for x in range(0, 512, 128)]
    promised = dict.fromkeys(TRANSFORMS, 1.0)
    tight = NearDuplicateRule(threshold=1e-6, screen=-1.0, target_false_rate=0.001, est_false_rate=0.0, recall=promised)
    fit = rule_fit(tight, tiles, seed=0)
    assert fit.sampled == 12 and not fit.fits and fit.short["resize"] < 0.5
    assert fit.recall["jpeg"] == fit.recall["webp"] == 1.0
    assert "resize" in fit.message and "promised 100.0%" in fit.message and "recalibrate: true" in fit.message
    assert rule_fit(tight, tiles[:1], seed=0).fits
    wide = NearDuplicateRule(threshold=1.0, screen=-1.0, target_false_rate=0.001, est_false_rate=0.0, recall=promised)
    assert rule_fit(wide, tiles, seed=0).fits and rule_fit(wide, tiles, seed=0).message == ""


def test_a_calibration_drop_that_folds_far_more_than_the_estimate_says_is_warned_about():
    """The known-distinct sample cannot see look-alikes inside the copies' range under one label, nor tell them
    from real copies. What the rule folds in its own calibration drop can: far above the estimate, a warning.
    Real digits: a drop of 900 distinct ones folds nothing; the same drop holding JPEG and brightness copies of
    60 of them under their own labels folds ~12% of its images, against an estimate of ~0, and says so."""
    from tests.conftest import digits_with_planted_copies

    digits, labels, pick, copies = digits_with_planted_copies()
    images = list(digits)
    _, _, clean = calibrated(images, labels, sample=128)
    assert clean.drop_fold_rate <= 0.002
    assert not any("have a look-alike within it" in w for w in clean.warnings)

    _, _, held = calibrated(images + copies, np.concatenate([labels, labels[pick]]), sample=128)
    assert held.drop_fold_rate >= 0.1  # 60 copies and their 60 originals of 960 images
    assert held.drop_fold_rate >= 10 * max(held.est_false_rate, held.target_false_rate)
    warning = next(w for w in held.warnings if "have a look-alike within it" in w)
    assert "`copy_distance_threshold` below" in warning and f"{held.drop_fold_rate:.2%}" in warning
