"""What a landing drop may hold, turned into a stream of items to ingest.

A drop is one folder per day. It may hold, in any mix:
  * the ImageFolder layout: `<drop>/<label>/<any/depth>/<file>` (label = first-level folder name);
  * unlabeled images directly in the drop folder (label = None);
  * Parquet files in the Hugging Face image layout: an `image` struct column with `bytes` and/or `path`, and an
    optional `label` column (int, mapped to names through `labels.txt` beside the file or the Parquet schema's
    `huggingface` metadata; otherwise the int as text).

Items are yielded lazily and in a stable order, so memory does not grow with the size of the drop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synthdata.io.imageio import IMAGE_EXTENSIONS

PARQUET_EXTENSIONS = frozenset({".parquet"})
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class SourceItem:
    """One thing to ingest. Exactly one of `path` / `data` / `rejection` says how to get (or not get) it."""

    source_path: str  # stable, human-readable: relative to the landing root, `#row=N` for Parquet rows
    label: str | None
    path: str | None = None
    data: bytes | None = None
    rejection: str | None = None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _within(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def iter_drop(drop_dir: Path, landing_root: Path) -> Iterator[SourceItem]:
    """Walk one drop folder; never follows a link out of the landing root."""
    root = Path(landing_root).resolve()
    drop_dir = Path(drop_dir).resolve()
    if not drop_dir.is_dir():
        return
    yield from _walk(str(drop_dir), root, str(root) + os.sep, label=None, top=True)


def _walk(folder: str, root: Path, prefix: str, label: str | None, top: bool) -> Iterator[SourceItem]:
    # Plain strings, not Path objects: pathlib's parsing per file costs more than the walk itself, and this runs
    # in the ingest's main process, whose CPU the decoding workers need (docs/benchmarks.md).
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return  # the folder vanished between listing and reading: its files are reported by nobody, so say so
    for entry in entries:
        full = entry.path
        rel = full.removeprefix(prefix)
        if entry.is_symlink() and not _within(Path(full), root):
            yield SourceItem(rel, label, rejection=f"symlink escapes the landing root (points to {os.path.realpath(full)})")
            continue
        try:
            is_dir = entry.is_dir()
            is_file = entry.is_file()
        except OSError as e:
            yield SourceItem(rel, label, rejection=f"unreadable entry: {e}")
            continue
        if is_dir:
            if entry.name.startswith("."):
                continue  # tool state (.git, .ipynb_checkpoints), not data
            yield from _walk(full, root, prefix, label=entry.name if top else label, top=False)
        elif is_file:
            suffix = os.path.splitext(entry.name)[1].lower()
            if entry.name == LABELS_FILE and top:
                continue
            if suffix in PARQUET_EXTENSIONS:
                yield from iter_parquet(Path(full), root)
            elif suffix in IMAGE_EXTENSIONS:
                yield SourceItem(rel, label, path=full)
            else:
                yield SourceItem(rel, label, rejection=f"not an image file extension ({suffix or 'none'})")
        elif not os.path.lexists(full):
            yield SourceItem(rel, label, rejection="file vanished during scan")
        elif entry.is_symlink():
            yield SourceItem(rel, label, rejection=f"broken symlink (its target {os.readlink(full)} does not exist)")
        else:
            yield SourceItem(rel, label, rejection="not a regular file (device, socket or fifo)")


def parquet_label_names(path: Path) -> list[str] | None:
    """Class names for a Parquet drop: `labels.txt` beside it wins, then the HF schema metadata."""
    labels_txt = path.parent / LABELS_FILE
    if labels_txt.is_file():
        return [line.strip() for line in labels_txt.read_text().splitlines() if line.strip()]
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
        names = features.get("label", {}).get("names")
        return [str(n) for n in names] if names else None
    except (ValueError, AttributeError):
        return None


def iter_parquet(path: Path, root: Path, batch_rows: int = 256) -> Iterator[SourceItem]:
    import pyarrow.parquet as pq

    rel = _relative(path, root)
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several unrelated types for a broken file
        yield SourceItem(rel, None, rejection=f"unreadable Parquet file: {e}")
        return
    columns = pf.schema_arrow.names
    if "image" not in columns:
        yield SourceItem(rel, None, rejection=f"Parquet file has no 'image' column (columns: {columns})")
        return
    names = parquet_label_names(path)
    wanted = ["image"] + (["label"] if "label" in columns else [])
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted):
        images = batch.column("image").to_pylist()
        labels = batch.column("label").to_pylist() if "label" in wanted else [None] * len(images)
        for image, raw_label in zip(images, labels):
            label = _label_name(raw_label, names)
            src = f"{rel}#row={row}"
            row += 1
            if isinstance(image, dict) and image.get("bytes"):
                yield SourceItem(src, label, data=image["bytes"])
            elif isinstance(image, dict) and image.get("path"):
                target = path.parent / image["path"]
                if not _within(target, root):
                    yield SourceItem(src, label, rejection=f"image path escapes the landing root ({image['path']})")
                else:
                    yield SourceItem(src, label, path=str(target))
            else:
                yield SourceItem(src, label, rejection="Parquet row has neither image bytes nor an image path")


def _label_name(raw: object, names: list[str] | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and names is not None and 0 <= raw < len(names):
        return names[raw]
    return str(raw)
