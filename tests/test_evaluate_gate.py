"""The quality gate (synthdata.evaluate.gate) against stand-in generators made of real digits: the ideal one
passes every default floor, collapsed ones fail diversity whatever their utility, memorizing ones fail privacy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate import standins
from synthdata.evaluate.features import train_feature_extractor
from synthdata.evaluate.gate import Floor, default_floors, judge
from synthdata.evaluate.metrics import MetricRow
from synthdata.evaluate.suite import EvaluationInputs, evaluate_synthetic


@pytest.fixture(scope="module")
def verdicts():
    x, y, names = load_digits_uint8()
    y = np.array([names[i] for i in y], dtype=object)
    p = np.random.default_rng(0).permutation(len(x))
    (tx, ty), (vx, vy), (sx, sy), (px, py) = ((x[c], y[c]) for c in (p[:900], p[900:1200], p[1200:1500], p[1500:]))
    fx = train_feature_extractor(tx, ty, vx, vy, seed=0, max_seconds=30, max_epochs=6)
    n = len(px)
    generators = {
        "ideal": (px, py),
        "collapsed_1": standins.collapsed(tx, ty, n, 1),
        "class_means": standins.class_means(tx, ty, n),
        "memorizing": standins.memorizing(tx, ty, n, "exact"),
        "memorizing_jpeg": standins.memorizing(tx, ty, n, "jpeg"),
    }
    out = {}
    for name, (gx, gy) in generators.items():
        result = evaluate_synthetic(EvaluationInputs(tx, ty, vx, vy, sx, sy, gx, gy), fx, seeds=(0, 1),
                                    scarcity=False, cnn_max_epochs=0)  # fmt: skip
        out[name] = (result, judge(result.rows, default_floors("gan")))
    return out


def _failed(verdict) -> set[str]:
    return {f.split()[0] for f in verdict.failures}


def test_held_out_real_images_pass_every_default_floor_with_margin(verdicts):
    result, verdict = verdicts["ideal"]
    assert verdict.passed, verdict.failures
    assert set(verdict.checked) == {f.metric for f in default_floors("gan")}
    assert result.value("coverage") > 0.8 and result.value("recall") > 0.8
    assert result.value("mia_auc") < 0.56 and result.value("near_copy_fraction") < 0.04


def test_a_collapse_to_class_means_fails_diversity_although_its_tstr_passes(verdicts):
    result, verdict = verdicts["class_means"]
    assert result.value("tstr_trtr_ratio") >= 0.90  # the floor the first gate relied on alone
    assert {"coverage", "recall"} <= _failed(verdict)
    assert any("collapse" in n for n in result.notes)


def test_one_image_per_class_fails_coverage_and_recall(verdicts):
    result, verdict = verdicts["collapsed_1"]
    assert {"coverage", "recall"} <= _failed(verdict)
    assert result.value("recall") < 0.05


@pytest.mark.parametrize("name", ["memorizing", "memorizing_jpeg"])
def test_returning_training_images_fails_privacy_even_recompressed(verdicts, name):
    result, verdict = verdicts[name]
    assert {"closer_than_holdout_fraction", "near_copy_fraction"} <= _failed(verdict)
    assert result.value("mia_auc") > verdicts["ideal"][0].value("mia_auc") + 0.1
    assert result.value("coverage") > 0.9  # copies are diverse: only the privacy floors can catch them
    s, t, d = result.closest_pairs[0]
    assert d < 0.5 * result.value("dcr_holdout_median")


def test_a_missing_or_nan_metric_fails_and_failures_name_value_and_floor():
    rows = [MetricRow("coverage", 0.12), MetricRow("recall", float("nan")), MetricRow("coverage", 0.9, class_label="3")]
    verdict = judge(rows, [Floor("coverage", min=0.5), Floor("recall", min=0.3), Floor("mia_auc", max=0.6)])
    assert not verdict.passed
    assert verdict.failures == ["coverage 0.12 < min 0.50", "recall is NaN", "mia_auc missing (the evaluation did not produce it)"]
    assert verdict.checked["coverage"] == 0.12 and math.isnan(verdict.checked["recall"])
    assert judge([MetricRow("mia_auc", 0.7)], [Floor("mia_auc", max=0.6)]).failures == ["mia_auc 0.70 > max 0.60"]
    assert judge([MetricRow("mia_auc", 0.5)], [Floor("mia_auc", max=0.6)]).passed


def test_the_gate_judges_utility_on_val_where_measured_and_says_so(verdicts):
    """Publishing is a selection: the floor reads the val ratio, test only reports."""
    floors = [Floor("tstr_trtr_ratio", min=0.90)]
    rows = [MetricRow("tstr_trtr_ratio", 0.95), MetricRow("tstr_trtr_ratio_val", 0.85, split="val")]
    verdict = judge(rows, floors)
    assert verdict.failures == ["tstr_trtr_ratio (val) 0.85 < min 0.90"] and verdict.checked == {"tstr_trtr_ratio": 0.85}
    assert judge(rows[:1], floors).passed  # no val split: the test row is judged
    result, _ = verdicts["ideal"]  # a real evaluation measures the ratio on val too
    assert result.value("tstr_trtr_ratio_val") > 0.9 and any(r.split == "val" for r in result.rows if r.metric == "tstr_trtr_ratio_val")
