"""Export: a published training set, real and synthetic rows in one Parquet file in the Hugging Face image layout.

The layout is the one `synthdata.io.sources` reads (`image` {bytes, path}, `label` int), plus `label_name` and
`source` ("real" / "synthetic"), so an export can itself be dropped into a landing folder. Unlabeled real rows
are kept with a null `label` and `label_name`: null, not Hugging Face's -1, because our own reader (and any
reader that maps ints through `labels.txt`) would otherwise take -1 for a class named "-1".

Beside the file: `labels.txt` (class names) and `manifest.json` (what was published: the checkpoint, the
evaluation that passed the gate and its metrics, the counts). The manifest is written last, so a reader that
sees a manifest sees the files it describes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthdata.io.atomic import replacing, write_atomic

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportedSet:
    path: Path  # the Parquet file
    classes: list[str]  # label i of the file is classes[i]; also in labels.txt beside it
    rows_by_source: dict[str, int]
    unlabeled: int  # rows exported with a null label
    manifest_path: Path


def write_training_set(
    rows: pd.DataFrame, read: Callable[[str], bytes], out_dir: Path, provenance: Mapping[str, object] | None = None
) -> ExportedSet:
    """Write `rows` (columns `blob_key`, `label` (may be null), `source`, in file order) to
    `out_dir/training_set.parquet`, with `labels.txt` and `manifest.json` beside it.

    Image bytes come from `read(blob_key)` untouched. Labels are indexed in sorted order of their names, written
    to `labels.txt` and to the schema metadata (`synthdata_classes`). `provenance` (JSON-able: checkpoint id,
    evaluation id, metrics...) goes into the manifest with the counts. Every file is replaced atomically.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = rows["label"].astype(object).where(rows["label"].notna(), None).tolist()
    classes = sorted({v for v in labels if v is not None})
    index = {c: i for i, c in enumerate(classes)}
    table = pa.table(
        {
            "image": [{"bytes": read(k), "path": Path(k).name} for k in rows["blob_key"]],
            "label": pa.array([None if v is None else index[v] for v in labels], type=pa.int64()),
            "label_name": pa.array(labels, type=pa.string()),
            "source": rows["source"].tolist(),
        }
    ).replace_schema_metadata({"synthdata_classes": ",".join(classes)})
    target = Path(out_dir) / "training_set.parquet"
    with replacing(target) as f:
        pq.write_table(table, f)
    write_atomic(target.parent / "labels.txt", "\n".join(classes) + "\n")
    counts = {str(k): int(v) for k, v in rows["source"].value_counts().items()}
    unlabeled = sum(v is None for v in labels)
    manifest = {
        **(provenance or {}),
        "file": target.name,
        "rows": len(rows),
        "rows_by_source": counts,
        "unlabeled_rows": unlabeled,
        "classes": classes,
    }
    manifest_path = write_atomic(target.parent / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return ExportedSet(target, classes, counts, unlabeled, manifest_path)
