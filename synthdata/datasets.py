"""Real data sets that ship inside installed packages (nothing is downloaded at run time)."""

from __future__ import annotations

import numpy as np


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 1,797 real 8x8 handwritten digits as uint8 images (N, 8, 8), labels and class names.

    The originals hold 0..16 ink levels; they are scaled to 0..255 so they are ordinary grayscale images.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64), [str(i) for i in range(10)]
