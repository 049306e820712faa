"""Export: a published training set, real and synthetic rows in one Parquet file in the Hugging Face image layout.

The layout is the one `synthdata.io.sources` reads (`image` {bytes, path}, `label` int), plus `label_name` and
`source` ("real" / "synthetic"), so an export can itself be dropped into a landing folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthdata.io.atomic import replacing, write_atomic


@dataclass(frozen=True)
class ExportedSet:
    path: Path  # the Parquet file
    classes: list[str]  # label i of the file is classes[i]; also in labels.txt beside it
    rows_by_source: dict[str, int]


def write_training_set(rows: pd.DataFrame, read: Callable[[str], bytes], out_dir: Path) -> ExportedSet:
    """Write `rows` (columns `blob_key`, `label`, `source`, in file order) to `out_dir/training_set.parquet`.

    Image bytes come from `read(blob_key)` untouched. Labels are indexed in sorted order of their names, written
    to `labels.txt` and to the schema metadata (`synthdata_classes`). Both files are replaced atomically.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    classes = sorted(rows["label"].dropna().unique())
    table = pa.table(
        {
            "image": [{"bytes": read(k), "path": Path(k).name} for k in rows["blob_key"]],
            "label": [classes.index(v) for v in rows["label"]],
            "label_name": rows["label"].tolist(),
            "source": rows["source"].tolist(),
        }
    ).replace_schema_metadata({"synthdata_classes": ",".join(classes)})
    target = Path(out_dir) / "training_set.parquet"
    with replacing(target) as f:
        pq.write_table(table, f)
    write_atomic(target.parent / "labels.txt", "\n".join(classes) + "\n")
    counts = rows["source"].value_counts().to_dict()
    return ExportedSet(target, classes, {k: int(v) for k, v in counts.items()})
