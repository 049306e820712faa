"""Behaviour of `augment_split`: a split of real images in, stored PNGs and rows with their lineage out."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image

from synthdata.augment import AugmentPolicy, ColorJitter, GaussianNoise, Mixup, Rotate, augment_batch
from synthdata.augment.dataset import augment_split
from synthdata.io.store import BlobStore

COLUMNS = ["aug_id", "parent_id", "label", "copy_index", "seed", "policy_fingerprint", "ops", "soft_label", "blob_key"]
ROW_LOCAL = AugmentPolicy(ops=[Rotate(p=0.7), ColorJitter(p=0.8), GaussianNoise(p=0.6, std=(0.01, 0.05))])
WITH_MIXUP = AugmentPolicy(ops=[*ROW_LOCAL.ops, Mixup(p=0.6, alpha=0.4)])


@pytest.fixture(scope="module")
def split(digits):
    """The first 45 real 8x8 digits: three full batches of 16 rows would need 48, so the last batch is partial."""
    images, labels, names = digits
    return images[:45], [f"digit-{i:04d}" for i in range(45)], [names[v] for v in labels[:45]]


def run(split, tmp_path, policy=ROW_LOCAL, seed=5, copies=2, store_dir="store"):
    pixels, ids, labels = split
    store = BlobStore(tmp_path / store_dir)
    return augment_split(pixels, ids, labels, policy, seed, copies, batch_size=16, device="cpu", store=store), store


def decode(store: BlobStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.read(key))))


def test_one_row_per_copy_of_every_image_with_its_lineage(split, tmp_path):
    pixels, ids, labels = split
    result, _ = run(split, tmp_path)
    rows = result.rows
    assert list(rows.columns) == COLUMNS and len(rows) == 2 * 45
    assert rows["parent_id"].tolist() == ids + ids
    assert rows["copy_index"].tolist() == [0] * 45 + [1] * 45
    assert rows["label"].tolist() == labels + labels
    assert set(rows["seed"]) == {5} and set(rows["policy_fingerprint"]) == {ROW_LOCAL.fingerprint()}
    assert rows["aug_id"].is_unique
    for row in rows.itertuples():
        cid = row.blob_key.split("/")[-1].removesuffix(".png")
        assert row.blob_key == BlobStore.key_for(cid, "png", "augmented")
        assert row.aug_id == f"{row.parent_id[:16]}-{row.copy_index}-{cid[:16]}"
        assert json.loads(row.soft_label) == {row.label: 1.0}  # no mixing op: each row keeps its own label


def test_each_row_is_its_parent_and_copy_through_augment_batch_alone(split, tmp_path):
    """Row (image i, copy c) is what `augment_batch` makes of image i under parent_id "<id>#<c>", in any batch."""
    pixels, ids, labels = split
    result, store = run(split, tmp_path)
    classes = sorted(set(labels))
    for k in (0, 17, 44, 45 + 3, 45 + 44):
        row = result.rows.iloc[k]
        i = ids.index(row["parent_id"])
        x = torch.from_numpy(pixels[i : i + 1, None]).float().div(255)
        alone = augment_batch(x, torch.tensor([classes.index(labels[i])]), len(classes),
                              [f"{ids[i]}#{row['copy_index']}"], ROW_LOCAL, 5)  # fmt: skip
        assert json.loads(row["ops"]) == alone.records[0]["ops"]
        expected = (alone.images[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        assert np.array_equal(decode(store, row["blob_key"]), expected)
    assert result.rows["ops"].map(json.loads).map(len).sum() > 90  # the policy really did things


def test_stored_pngs_decode_to_the_returned_images(split, tmp_path):
    pixels, _, _ = split
    result, store = run(split, tmp_path)
    assert np.array_equal(result.before, pixels[:10])
    assert result.after.shape == (10, 8, 8) and result.after.dtype == np.uint8
    for k, key in enumerate(result.rows["blob_key"]):
        image = decode(store, key)
        assert image.shape == (8, 8) and image.dtype == np.uint8
        if k < 10:
            assert np.array_equal(image, result.after[k])
    assert not np.array_equal(result.after, result.before)
    digest = hashlib.sha256(store.read(result.rows["blob_key"][0])).hexdigest()
    assert result.rows["blob_key"][0].endswith(f"{digest}.png")  # stored under its content hash


def test_same_inputs_and_seed_give_identical_rows_and_blobs(split, tmp_path):
    first, store_a = run(split, tmp_path, store_dir="a")
    again, store_b = run(split, tmp_path, store_dir="b")
    pd.testing.assert_frame_equal(first.rows, again.rows)
    assert first.op_counts == again.op_counts
    for key in first.rows["blob_key"]:
        assert store_a.read(key) == store_b.read(key)


def test_a_different_seed_gives_different_rows_of_the_same_parents(split, tmp_path):
    base, _ = run(split, tmp_path, seed=5)
    other, _ = run(split, tmp_path, seed=6, store_dir="other")
    assert other.rows["parent_id"].tolist() == base.rows["parent_id"].tolist()
    assert (other.rows["blob_key"] != base.rows["blob_key"]).sum() > 80
    assert (other.rows["ops"] != base.rows["ops"]).sum() > 80
    assert set(other.rows["policy_fingerprint"]) == set(base.rows["policy_fingerprint"])


def test_the_two_copies_of_an_image_are_distinct_draws(split, tmp_path):
    result, _ = run(split, tmp_path)
    first, second = result.rows.iloc[:45], result.rows.iloc[45:]
    assert (first["ops"].to_numpy() != second["ops"].to_numpy()).sum() > 40


def test_mixed_rows_record_their_partner_and_soft_label(split, tmp_path):
    _, ids, _ = split
    result, _ = run(split, tmp_path, policy=WITH_MIXUP, copies=1)
    mixed = 0
    for row in result.rows.itertuples():
        soft = json.loads(row.soft_label)
        assert abs(sum(soft.values()) - 1.0) < 1e-3
        assert soft[row.label] >= 0.5 - 1e-4  # a row always keeps at least half of its own label
        for entry in json.loads(row.ops):
            if entry["op"] == "mixup":
                mixed += 1
                partner = entry["params"]["partner_parent_id"]
                assert partner != f"{row.parent_id}#0"
                # Partners come from the row's own batch of 16 parents.
                assert ids.index(partner.removesuffix("#0")) // 16 == ids.index(row.parent_id) // 16
    assert mixed > 15


def test_op_counts_count_the_recorded_ops(split, tmp_path):
    result, _ = run(split, tmp_path, policy=WITH_MIXUP)
    recorded = pd.Series([e["op"] for ops in result.rows["ops"] for e in json.loads(ops)]).value_counts()
    assert result.op_counts == {k: int(v) for k, v in recorded.items()}
    assert set(result.op_counts) == {"rotate", "color_jitter", "gaussian_noise", "mixup"}
    assert result.seconds > 0


def test_rgb_images_are_stored_as_rgb(tmp_path):
    astronaut = skimage.data.astronaut()
    pixels = np.stack([astronaut[y : y + 24, x : x + 24] for y in (0, 100, 200) for x in (0, 100, 200)])
    ids, labels = [f"patch-{i}" for i in range(9)], ["top"] * 3 + ["middle"] * 3 + ["bottom"] * 3
    store = BlobStore(tmp_path)
    result = augment_split(pixels, ids, labels, AugmentPolicy.default(), 0, 1, batch_size=4, device="cpu", store=store)
    assert np.array_equal(result.before, pixels[:4])  # the preview comes from the first batch
    assert result.after.shape == (4, 24, 24, 3)
    for k, key in enumerate(result.rows["blob_key"]):
        image = decode(store, key)
        assert image.shape == (24, 24, 3)
        if k < 4:
            assert np.array_equal(image, result.after[k])
