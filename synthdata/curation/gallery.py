"""The galleries shown with `images`: kept image and duplicate side by side, and the closest known-distinct
pairs that limit a new near-duplicate rule, so a person can judge the pairs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from synthdata.io.store import BlobStore
from synthdata.render import image_grid, markdown_image, thumbnail


def gallery_rows(groups: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Which `duplicate_groups` rows the gallery shows: one per group, near-duplicates first, then a few exact."""
    near = groups[groups["kind"] == "near"].drop_duplicates("representative_id").head(n - 3)
    exact = groups[groups["kind"] == "exact"].drop_duplicates("representative_id").head(3)
    return pd.concat([near, exact])


def pair_gallery(
    heading: str, pairs: Sequence[tuple[str, str]], captions: Sequence[str], read: Callable[[str], Image.Image | bytes]
) -> str:
    """Markdown: `heading`, one grid row per pair (left beside right, 48 px thumbnails), then one caption line per pair.

    `pairs` name images by the keys `read` takes; `read` returns the decoded image (for stored images:
    `BlobStore.decode(key).image`, under the store's limits) or encoded bytes (decoded under the default
    limits). Each image is read once however often it appears.
    "" when there are no pairs.
    """
    if not pairs:
        return ""
    thumbs: dict[str, np.ndarray] = {}
    tiles = []
    for pair in pairs:
        for key in pair:
            if key not in thumbs:
                thumbs[key] = thumbnail(read(key), 48)
            tiles.append(thumbs[key])
    grid = image_grid(np.stack(tiles), ncol=2, scale=2)
    return f"{heading}\n\n" + markdown_image(grid) + "\n\n" + "\n".join(captions)


def duplicate_gallery(shown: pd.DataFrame, key_of: Mapping[str, str], store: BlobStore) -> str:
    """Markdown: one row per group, the kept original (left) beside its duplicate (right), and a caption line.

    `key_of` maps image ids to blob keys; a pair whose image is not in it is left out. "" when nothing to show.
    """
    pairs, captions = [], []
    for row in shown.itertuples():
        pair = (key_of.get(row.representative_id), key_of.get(row.member_id))
        if None in pair:
            continue
        pairs.append(pair)
        captions.append(f"- {row.kind} (hamming {row.hamming}, similarity {row.similarity:.3f}): `{row.member_source}`")
    return pair_gallery("Kept (left) and duplicate (right):", pairs, captions, lambda key: store.decode(key).image)


def limiting_gallery(
    pairs: Sequence[tuple[str, str, float]], files: Mapping[str, tuple[str, str, str | None]], threshold: float,
    store: BlobStore,
) -> str:  # fmt: skip
    """Markdown: the closest pairs a new near-duplicate rule took as known distinct (image ids a, b and their
    copy distance, closest first), side by side with their files and labels, and what to do about them.

    `files` maps image ids to (blob key, source path, label); a pair whose image is not in it is left out.
    "" when nothing to show.
    """
    shown = [(a, b, d) for a, b, d in pairs if a in files and b in files]
    captions = [f"- copy distance {d:.4g}: `{files[a][1]}` ({files[a][2]}) / `{files[b][1]}` ({files[b][2]})"
                for a, b, d in shown]  # fmt: skip
    heading = (
        f"The closest pairs the calibration took as distinct: the threshold ({threshold:.4g}) stops "
        "just below them, whatever recall of copies that costs (`near_rule_recall`). If a pair is one picture "
        "filed under two labels, correct the labels and set `recalibrate: true`; if they are distinct, the rule "
        "is right, and only a higher `target_false_rate` would keep more copies, by folding pairs like these:"
    )
    return pair_gallery(heading, [(files[a][0], files[b][0]) for a, b, _ in shown], captions,
                        lambda key: store.decode(key).image)  # fmt: skip
