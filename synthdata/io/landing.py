"""Write a data set into the landing area as daily drops (the ImageFolder layout a team's upstream writes).

Used by the demo to seed the bundled digits, by tests, and by anyone who wants to replay a labelled array
data set through the pipeline. It can also plant the mess real drops contain: byte-identical copies,
re-encoded copies (same pixels, different bytes) and unreadable files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from synthdata.io.atomic import write_atomic


@dataclass
class DropManifest:
    files: dict[str, list[str]] = field(default_factory=dict)  # date -> relative paths written
    exact_copies: list[tuple[str, str]] = field(default_factory=list)  # (original, copy)
    reencoded_copies: list[tuple[str, str]] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)  # relative path -> what is wrong with it

    @property
    def total_files(self) -> int:
        return sum(len(v) for v in self.files.values())


def _png_bytes(arr: np.ndarray, compress_level: int = 6, note: str | None = None) -> bytes:
    buf = io.BytesIO()
    info = None
    if note is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("note", note)
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level, pnginfo=info)
    return buf.getvalue()


def export_as_drops(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    landing: Path,
    dates: list[str],
    seed: int = 0,
    exact_copies: int = 0,
    reencoded_copies: int = 0,
    corrupt_files: int = 0,
) -> DropManifest:
    """Spread `images` (uint8, (N,H,W) or (N,H,W,3)) over one drop per date, shuffled with `seed`.

    Copies of images from earlier drops are planted in later drops (duplicates typically arrive across days);
    corrupt files cycle through zero-byte, truncated PNG and non-image bytes.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not dates:
        raise ValueError("at least one drop date is needed")
    rng = np.random.default_rng(seed)
    landing = Path(landing)
    manifest = DropManifest(files={d: [] for d in dates})
    order = rng.permutation(len(images))
    written: list[tuple[str, int, int]] = []  # (relative path, image index, drop index)
    for rank, idx in enumerate(order):
        drop = rank % len(dates)
        rel = f"{dates[drop]}/{class_names[int(labels[idx])]}/img_{int(idx):06d}.png"
        write_atomic(landing / rel, _png_bytes(images[idx]))
        manifest.files[dates[drop]].append(rel)
        written.append((rel, int(idx), drop))

    # Copies go into the next day's drop, so the original is the first seen (with one drop: the same drop).
    sources = [w for w in written if w[2] < len(dates) - 1] or written
    picks = rng.choice(len(sources), size=min(len(sources), exact_copies + reencoded_copies), replace=False)
    for n, pick in enumerate(picks):
        rel, idx, drop = sources[int(pick)]
        target_date = dates[min(drop + 1, len(dates) - 1)]
        label = class_names[int(labels[idx])]
        if n < exact_copies:
            copy_rel = f"{target_date}/{label}/copy_{int(idx):06d}.png"
            write_atomic(landing / copy_rel, (landing / rel).read_bytes())
            manifest.exact_copies.append((rel, copy_rel))
        else:
            copy_rel = f"{target_date}/{label}/reencoded_{int(idx):06d}.png"
            write_atomic(landing / copy_rel, _png_bytes(images[idx], compress_level=1, note="re-encoded"))
            manifest.reencoded_copies.append((rel, copy_rel))
        manifest.files[target_date].append(copy_rel)

    kinds = ("zero-byte file", "truncated PNG", "not an image (text with a .png name)")
    for n in range(corrupt_files):
        date = dates[(n + n // len(kinds)) % len(dates)]  # every kind appears, in varying drops
        label = class_names[int(labels[order[n]])]
        rel = f"{date}/{label}/broken_{n:03d}.png"
        kind = kinds[n % len(kinds)]
        if kind == "zero-byte file":
            data = b""
        elif kind == "truncated PNG":
            data = _png_bytes(images[order[n]])[: -max(20, len(_png_bytes(images[order[n]])) // 2)]
        else:
            data = b"this is a log file, not an image\n" * 4
        write_atomic(landing / rel, data)
        manifest.files[date].append(rel)
        manifest.corrupt[rel] = kind
    return manifest
