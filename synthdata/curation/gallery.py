"""The duplicate gallery shown with `images`: kept image and duplicate side by side, so a person can judge the pairs."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from synthdata.io.store import BlobStore
from synthdata.render import image_grid, markdown_image, thumbnail


def gallery_rows(groups: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Which `duplicate_groups` rows the gallery shows: one per group, near-duplicates first, then a few exact."""
    near = groups[groups["kind"] == "near"].drop_duplicates("representative_id").head(n - 3)
    exact = groups[groups["kind"] == "exact"].drop_duplicates("representative_id").head(3)
    return pd.concat([near, exact])


def duplicate_gallery(shown: pd.DataFrame, key_of: Mapping[str, str], store: BlobStore) -> str:
    """Markdown: one row per group, the kept original (left) beside its duplicate (right), and a caption line.

    `key_of` maps image ids to blob keys; a pair whose image is not in it is left out. "" when nothing to show.
    """
    if shown.empty:
        return ""
    tiles, lines, thumbs = [], [], {}
    for row in shown.itertuples():
        pair = [key_of.get(row.representative_id), key_of.get(row.member_id)]
        if None in pair:
            continue
        for key in pair:  # an exact duplicate's pair is one image: decode it once
            if key not in thumbs:
                thumbs[key] = thumbnail(store.read(key), 48)
            tiles.append(thumbs[key])
        lines.append(f"- {row.kind} (hamming {row.hamming}, similarity {row.similarity:.3f}): `{row.member_source}`")
    if not tiles:
        return ""
    grid = image_grid(np.stack(tiles), ncol=2, scale=2)
    return "Kept (left) and duplicate (right):\n\n" + markdown_image(grid) + "\n\n" + "\n".join(lines)
