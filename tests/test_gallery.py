"""The duplicate gallery (synthdata.curation.gallery): the pairs a person sees beside `images`."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
from PIL import Image

from synthdata.curation.gallery import duplicate_gallery, gallery_rows
from synthdata.datasets import load_digits_uint8
from synthdata.io.arrays import store_pngs
from synthdata.io.store import BlobStore


def _groups(n_near: int, n_exact: int) -> pd.DataFrame:
    rows = [("near", f"r{i}", f"m{i}", 5, 0.99) for i in range(n_near)]
    rows += [("exact", f"e{i}", f"x{i}", 0, 1.0) for i in range(n_exact)]
    rows += [("near", "r0", "m0b", 6, 0.98)]  # a second member of group r0
    return pd.DataFrame(
        [{"kind": k, "representative_id": r, "member_id": m, "hamming": h, "similarity": s, "member_source": f"d/{m}.png"}
         for k, r, m, h, s in rows]
    )  # fmt: skip


def test_gallery_shows_one_row_per_group_near_first_then_three_exact():
    shown = gallery_rows(_groups(n_near=12, n_exact=5), n=10)
    assert list(shown["kind"]) == ["near"] * 7 + ["exact"] * 3
    assert shown["representative_id"].is_unique


def test_gallery_puts_each_kept_original_beside_its_duplicate(tmp_path):
    images, _, _ = load_digits_uint8()
    store = BlobStore(tmp_path)
    keys = [k for _, k in store_pngs(store, images[:4], "images")]
    shown = pd.DataFrame(
        [{"kind": "near", "representative_id": "a", "member_id": "b", "hamming": 4, "similarity": 0.991, "member_source": "d/b.png"},
         {"kind": "exact", "representative_id": "c", "member_id": "c", "hamming": 0, "similarity": 1.0, "member_source": "d/c2.png"},
         {"kind": "near", "representative_id": "a", "member_id": "gone", "hamming": 9, "similarity": 0.96, "member_source": "d/g.png"}]
    )  # fmt: skip
    md = duplicate_gallery(shown, {"a": keys[0], "b": keys[1], "c": keys[2]}, store)
    assert md.splitlines()[-2:] == ["- near (hamming 4, similarity 0.991): `d/b.png`", "- exact (hamming 0, similarity 1.000): `d/c2.png`"]
    png = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", md).group(1))
    grid = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    # two rows (the pair without a stored member is left out) of two 48 px tiles, 1 px padding, scale 2
    assert grid.shape == ((2 * 49 + 1) * 2, (2 * 49 + 1) * 2)
    left, right = grid[2:98, 2:98], grid[2:98, 100:196]
    assert not np.array_equal(left, right)  # a near pair: two different images
    assert np.array_equal(grid[100:196, 2:98], grid[100:196, 100:196])  # an exact pair: the same image twice
    assert duplicate_gallery(shown.iloc[2:], {"a": keys[0]}, store) == ""
    assert duplicate_gallery(shown.iloc[:0], {}, store) == ""
