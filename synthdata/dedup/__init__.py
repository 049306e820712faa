"""Duplicate detection, one stage per module: ``phash`` (perceptual hashes, on ``resample``'s Pillow-exact
thumbnails), ``candidates`` (banded hash search in DuckDB), ``confirm`` (pixel confirmation, on ``sampling``'s
common frame) and ``groups`` (first-seen-wins duplicate groups)."""
