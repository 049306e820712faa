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


def _printable(name: str) -> str:
    """A file name as text the warehouse can store: bytes that are not UTF-8 (kept by Python as surrogates)
    are shown as escapes instead of failing the whole drop's insert."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
        return  # the folder vanished between listing and reading: there is nothing left to report
    except OSError as e:
        yield SourceItem(_printable(folder.removeprefix(prefix)), label, rejection=f"unreadable folder: {e.strerror or e}")
        return
    for entry in entries:
        full = entry.path
        rel = _printable(full.removeprefix(prefix))
        try:
            escapes = entry.is_symlink() and not _within(Path(full), root)
        except (OSError, RuntimeError) as e:  # a link loop, or a folder we may not stat
            yield SourceItem(rel, label, rejection=f"unreadable entry: {e}")
            continue
        if escapes:
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


def parquet_label_names(path: Path, metadata: dict[bytes, bytes] | None) -> list[str] | None:
    """Class names for a Parquet drop: `labels.txt` beside it wins, then the HF schema metadata (`metadata`,
    the file's Arrow schema metadata)."""
    labels_txt = path.parent / LABELS_FILE
    if labels_txt.is_file():
        text = labels_txt.read_text(errors="backslashreplace")
        return [line.strip() for line in text.splitlines() if line.strip()]
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
        names = features.get("label", {}).get("names")
        return [str(n) for n in names] if names else None
    except (ValueError, AttributeError):
        return None


def iter_parquet(path: Path, root: Path, batch_rows: int = 256) -> Iterator[SourceItem]:
    """One item per row, streamed row group by row group. A row group that breaks part way yields a rejection
    for each row it still owed (from the footer's counts) and the next group is read, so the rows in always
    equal the rows accepted plus rejected."""
    import pyarrow.parquet as pq

    rel = _printable(_relative(path, root))
    try:
        pf = pq.ParquetFile(path)
        columns = pf.schema_arrow.names
        names = parquet_label_names(path, pf.schema_arrow.metadata)
        group_rows = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    except Exception as e:  # pyarrow raises several unrelated types for a broken file
        yield SourceItem(rel, None, rejection=f"unreadable Parquet file: {e}")
        return
    if "image" not in columns:
        yield SourceItem(rel, None, rejection=f"Parquet file has no 'image' column (columns: {columns})")
        return
    wanted = ["image"] + (["label"] if "label" in columns else [])
    start = 0
    for group, n_rows in enumerate(group_rows):
        row = start
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=wanted):
                images = batch.column("image").to_pylist()
                labels = batch.column("label").to_pylist() if "label" in wanted else [None] * len(images)
                for image, raw_label in zip(images, labels):
                    yield _parquet_row(path, root, f"{rel}#row={row}", image, _label_name(raw_label, names))
                    row += 1
        except Exception as e:  # a damaged page surfaces only when it is read
            reason = f"unreadable Parquet file: row group {group} broken from row {row}: {e}"
            for missing in range(row, max(row + 1, start + n_rows)):
                yield SourceItem(f"{rel}#row={missing}", None, rejection=reason)
            row = max(row + 1, start + n_rows)
        start = row


def _parquet_row(path: Path, root: Path, src: str, image: object, label: str | None) -> SourceItem:
    if isinstance(image, bytes | bytearray) and image:  # a plain binary column
        return SourceItem(src, label, data=bytes(image))
    if isinstance(image, dict) and image.get("bytes"):
        return SourceItem(src, label, data=image["bytes"])
    if isinstance(image, dict) and isinstance(image.get("path"), str) and image["path"]:
        target = path.parent / image["path"]
        try:
            inside = _within(target, root)
        except (OSError, RuntimeError, ValueError) as e:  # a link loop, a NUL in the path
            return SourceItem(src, label, rejection=f"unusable image path {image['path']!r}: {e}")
        if not inside:
            return SourceItem(src, label, rejection=f"image path escapes the landing root ({image['path']})")
        return SourceItem(src, label, path=str(target))
    return SourceItem(src, label, rejection="Parquet row has neither image bytes nor an image path")


def _label_name(raw: object, names: list[str] | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and names is not None and 0 <= raw < len(names):
        return names[raw]
    return str(raw)
