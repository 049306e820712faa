"""Resize views made as Pillow resizes 8-bit images (copy_distance/v6): Pillow clips a bicubic or Lanczos
overshoot after its horizontal pass, which a float resize does not, so on sharp line art (Debian's Adwaita
icons) only the 8-bit view reproduces a resized copy; calibration's scale of copies stays the float view's."""

import numpy as np
import pytest
from PIL import Image

from synthdata.dedup.calibrate import measure_positives
from synthdata.dedup.evidence import copy_evidence
from tests.conftest import ADWAITA, adwaita_icons

pytestmark = pytest.mark.skipif(
    not ADWAITA.is_dir(), reason="needs Debian's adwaita-icon-theme (apt-get install adwaita-icon-theme)"
)
FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def test_pillow_resized_copies_of_line_art_are_reproduced_by_the_eight_bit_views():
    icons = [x for _, x in adwaita_icons()[::9]][:60]
    rng = np.random.default_rng(0)
    images, pairs = [], []
    for x in icons:
        side = int(rng.integers(26, 97))  # 0.55x-2x of 48 px, as curation's planted resizes
        copy = np.asarray(Image.fromarray(x).resize((side, side), FILTERS[int(rng.integers(1, 3))]))
        pairs.append((len(images), len(images) + 1))
        images += [x, copy]
    exact, corr = copy_evidence(pairs, images.__getitem__)
    floats, corr_floats = copy_evidence(pairs, images.__getitem__, eight_bit_resizes=False)
    assert np.quantile(exact, 0.9) < 0.005 and exact.max() < 0.02, np.sort(exact)[-5:]
    assert np.median(floats) > 0.01 and (floats > 0.03).mean() > 0.1  # the float view leaves the clipped ringing
    assert (exact <= floats + 1e-6).all()  # one more view: never farther
    np.testing.assert_array_equal(corr, corr_floats)  # the screen is the float views' luma


def test_calibration_keeps_the_float_scale_of_resized_copies_for_its_range():
    """Planted copies are Pillow's, so the 8-bit view puts them at ~0: the recall estimate uses that, the
    copies' range (the threshold's headroom for other resizers) the float view."""
    icons = [x for _, x in adwaita_icons()[::7]][:64]
    positives = measure_positives(icons, seed=0)
    resized = positives.kinds == "resize"
    assert resized.sum() == len(icons) and positives.reproduced is not None
    assert np.median(positives.reproduced[resized]) < 0.002 < np.median(positives.distance[resized])
    others = ~resized
    np.testing.assert_array_equal(positives.reproduced[others], positives.distance[others])
    # (measured: at copy distance 0.005 the estimate keeps 98% of them; the float scale would say 30%)
    assert positives.recall(0.005)["resize"] >= 0.95 and np.mean(positives.distance[resized] <= 0.005) < 0.5
