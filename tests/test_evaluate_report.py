"""The quality report (synthdata.evaluate.report): a page that says what was measured and shows the samples."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re

from PIL import Image

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.report import publish_report, render_report
from synthdata.render import image_grid

METRICS = {"trtr_accuracy": 0.97123, "tstr_accuracy": 0.9, "tstr_trtr_ratio": 0.92667}


def _report() -> tuple[str, bytes]:
    images, _, _ = load_digits_uint8()
    grid = image_grid(images[:20], ncol=10, scale=4)
    when = dt.datetime(2026, 12, 6, 9, 30, tzinfo=dt.UTC)
    return render_report("gan", "e1", "c1", METRICS, 1000, 300, 2000, grid, when), grid


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
