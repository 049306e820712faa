"""The pipeline's own feature space (synthdata.evaluate.features): a small CNN fit on real train images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.features import (
    extract_features,
    images_fingerprint,
    load_feature_extractor,
    predict,
    save_feature_extractor,
    train_feature_extractor,
)


@pytest.fixture(scope="module")
def digits():
    x, y, names = load_digits_uint8()
    y = np.array([names[i] for i in y], dtype=object)
    p = np.random.default_rng(0).permutation(len(x))
    return (x[p[:900]], y[p[:900]]), (x[p[900:1200]], y[p[900:1200]])


@pytest.fixture(scope="module")
def fx(digits):
    (tx, ty), (vx, vy) = digits
    return train_feature_extractor(tx, ty, vx, vy, seed=0, max_seconds=30, max_epochs=6)


def test_the_extractor_learns_the_digits_and_describes_itself(fx, digits):
    (tx, ty), (vx, vy) = digits
    assert fx.val_accuracy >= 0.9
    assert float((predict(fx, vx) == vy).mean()) == pytest.approx(fx.val_accuracy)
    assert fx.classes == [str(i) for i in range(10)]
    assert (fx.image_mode, fx.image_size, fx.feature_dim) == ("L", (8, 8), 128)
    assert fx.data_fingerprint == images_fingerprint(tx, list(ty))
    feats = extract_features(fx, vx)
    assert feats.shape == (300, 128) and feats.dtype == np.float32 and np.isfinite(feats).all()


def test_save_and_load_round_trip_gives_equal_features_and_writes_one_file(fx, digits, tmp_path):
    path = tmp_path / "fx" / "extractor.pt"
    save_feature_extractor(fx, path)
    assert [p.name for p in path.parent.iterdir()] == ["extractor.pt"]  # no temp file left behind
    torch.load(path, weights_only=True)  # plain data and tensors only
    back = load_feature_extractor(path)
    (_, _), (vx, _) = digits
    np.testing.assert_array_equal(extract_features(back, vx), extract_features(fx, vx))
    assert (back.classes, back.image_mode, back.image_size, back.val_accuracy, back.data_fingerprint) == (
        fx.classes, fx.image_mode, fx.image_size, fx.val_accuracy, fx.data_fingerprint)  # fmt: skip


def test_the_same_seed_gives_the_same_network_and_another_seed_another(digits):
    (tx, ty), (vx, vy) = digits
    a, b, c = (train_feature_extractor(tx[:300], ty[:300], vx, vy, seed=s, max_seconds=60, max_epochs=2) for s in (3, 3, 4))
    np.testing.assert_array_equal(extract_features(a, vx), extract_features(b, vx))
    assert not np.array_equal(extract_features(a, vx), extract_features(c, vx))


def test_faces_25px_and_rgb_32px_train_and_other_formats_are_converted():
    faces = np.rint(data.lfw_subset() * 255).astype(np.uint8)  # 100 faces, then 100 other patches, 25x25
    labels = np.array(["face"] * 100 + ["other"] * 100, dtype=object)
    p = np.random.default_rng(0).permutation(200)
    fx = train_feature_extractor(faces[p[:160]], labels[p[:160]], faces[p[160:]], labels[p[160:]], seed=0, max_epochs=4)
    assert fx.image_size == (25, 25) and fx.val_accuracy > 0.5
    # RGB 32x32: digits upscaled and tinted with a colour per class (colour carries part of the label).
    x, y, _ = load_digits_uint8()
    big = np.repeat(np.repeat(x[:400], 4, axis=1), 4, axis=2)  # 32x32
    tint = np.random.default_rng(1).uniform(0.4, 1.0, size=(10, 3))
    rgb = (big[..., None] * tint[y[:400]][:, None, None, :]).astype(np.uint8)
    yy = y[:400].astype(str)
    fx_rgb = train_feature_extractor(rgb[:300], yy[:300], rgb[300:], yy[300:], seed=0, max_epochs=3)
    assert (fx_rgb.image_mode, fx_rgb.image_size) == ("RGB", (32, 32)) and fx_rgb.val_accuracy > 0.5
    # A grey 8x8 set through the RGB 32x32 network, and RGB through the grey faces network: converted, not refused.
    assert extract_features(fx_rgb, x[:5]).shape == (5, 128)
    assert extract_features(fx, rgb[:5]).shape == (5, 128)
    assert extract_features(fx, faces[:0]).shape == (0, 128)
