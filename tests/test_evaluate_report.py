"""The quality report (synthdata.evaluate.report): a page that says what was measured, what passed, and shows it."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re

import numpy as np
from PIL import Image

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.gate import Floor
from synthdata.evaluate.report import publish_report, render_report
from synthdata.render import image_grid

METRICS = {"trtr_accuracy": 0.97123, "tstr_accuracy": 0.9, "tstr_trtr_ratio": 0.92667}
WHEN = dt.datetime(2026, 12, 6, 9, 30, tzinfo=dt.UTC)


def _report() -> tuple[str, bytes]:
    images, _, _ = load_digits_uint8()
    grid = image_grid(images[:20], ncol=10, scale=4)
    return render_report("gan", "e1", "c1", METRICS, 1000, 300, 2000, grid, WHEN), grid


def test_report_lists_every_metric_the_counts_and_the_time():
    text, _ = _report()
    for name, value in METRICS.items():
        assert f"| {name} | {value:.4f} |" in text
    assert "Evaluation `e1` of checkpoint `c1`, 2026-12-06 09:30 UTC." in text
    assert "Real train images: 1000; real test images: 300; synthetic images: 2000." in text


def test_report_embeds_the_sample_grid_as_a_decodable_png():
    text, grid = _report()
    data = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text).group(1))
    assert data == grid
    assert Image.open(io.BytesIO(data)).size == Image.open(io.BytesIO(grid)).size


def test_publish_writes_the_evaluation_and_latest_and_nothing_else(tmp_path):
    text, _ = _report()
    path = publish_report(tmp_path / "reports" / "gan", "e1", text)
    publish_report(tmp_path / "reports" / "gan", "e2", text.replace("`e1`", "`e2`"))
    assert path.read_text() == text
    assert "`e2`" in (path.parent / "latest.md").read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.md", "quality_e1.md", "quality_e2.md"]


# ---- the full report of an evaluation (synthdata.evaluate.suite) with its verdict


def _full_report() -> tuple[str, object]:
    from synthdata.evaluate.features import train_feature_extractor
    from synthdata.evaluate.gate import default_floors, judge
    from synthdata.evaluate.suite import EvaluationInputs, evaluate_synthetic

    x, y, names = load_digits_uint8()
    y = np.array([names[i] for i in y], dtype=object)
    p = np.random.default_rng(0).permutation(len(x))
    tr, va, te, pool = p[:900], p[900:1200], p[1200:1500], p[1500:1700]
    fx = train_feature_extractor(x[tr], y[tr], x[va], y[va], seed=0, max_epochs=3)
    result = evaluate_synthetic(EvaluationInputs(x[tr], y[tr], x[va], y[va], x[te], y[te], x[pool], y[pool]), fx,
                                seeds=(0,), fractions=(0.5, 1.0), cnn_max_epochs=0)  # fmt: skip
    floors = default_floors("gan") + [Floor("fid", max=0.0)]  # one floor no real evaluation meets
    text = render_report("gan", "e9", "c9", result=result, verdict=judge(result.rows, floors), floors=floors,
                         counts={"train": 900, "val": 300, "test": 300, "synthetic": 200}, created_at=WHEN)  # fmt: skip
    return text, result


def test_the_full_report_shows_verdict_tables_findings_and_every_figure():
    text, result = _full_report()
    assert "## Verdict: FAILED" in text and "- fid " in text and "> max 0.00" in text
    assert "Images: train: 900; val: 300; test: 300; synthetic: 200." in text
    for c in range(10):  # one per-class row per digit
        assert re.search(rf"^\| {c}( \| [0-9.]+){{7}} \|$", text, re.M)
    assert "| real_synth |" in text and "50% real" in text
    for note in result.notes:
        assert f"- {note}" in text
    pngs = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]
    assert len(pngs) == 5  # per class, utility vs fraction, distances, closest pairs, samples
    assert all(Image.open(io.BytesIO(png)).size[0] > 50 for png in pngs)


def test_the_floor_table_shows_the_value_the_gate_judged():
    """The gate judges utility on val (gate.judge): the report's floor row must show that value, not test's."""
    text, result = _full_report()
    val = result.value("tstr_trtr_ratio_val")
    row = re.search(r"^\| tstr_trtr_ratio \(val\) \| ([0-9.]+) \|", text, re.M)
    assert row is not None, "no floor row for the val ratio"
    assert abs(float(row.group(1)) - val) < 5e-4 and abs(val - result.value("tstr_trtr_ratio")) > 0  # not test's
