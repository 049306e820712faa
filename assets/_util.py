"""Small helpers shared by asset modules (metadata formatting, reading tables)."""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from synthdata.io.arrays import load_arrays, training_format
from synthdata.io.store import BlobStore


@dataclass
class SplitArrays:
    ids: list[str]
    labels: list[str]
    pixels: np.ndarray  # uint8 (N, H, W) for L, (N, H, W, 3) for RGB
    mode: str
    size: tuple[int, int]


def load_split(con, store: BlobStore, split: str, mode: str = "", size: int | tuple[int, int] = 0) -> SplitArrays:
    """The labelled images of one split in one training format.

    `mode` / `size` as configured ("" / 0: what most of the split's images have); a (width, height) tuple
    is used as given, e.g. the format a checkpoint was trained on.
    """
    df = con.execute(
        """SELECT s.image_id, s.label, i.blob_key, i.width, i.height, i.mode FROM splits s
           JOIN images i USING (image_id) WHERE s.split = ? AND s.label IS NOT NULL ORDER BY s.image_id""",
        [split],
    ).df()
    if df.empty:
        raise dg.Failure(f"the {split} split has no labelled images: materialize `splits` first")
    if isinstance(size, tuple):
        fmt = (mode, size)
    else:
        fmt = training_format(df["mode"], df["width"], df["height"], mode, size)
    pixels = load_arrays(store, list(df["blob_key"]), *fmt)
    return SplitArrays(list(df["image_id"]), list(df["label"]), pixels, *fmt)


def md_table(df: pd.DataFrame, max_rows: int = 50) -> str:
    """A markdown table for the Dagster UI (no tabulate dependency)."""
    if df.empty:
        return "_none_"
    shown = df.head(max_rows)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n_{len(df) - max_rows} more rows not shown_"] if len(df) > max_rows else []
    return "\n".join([header, sep, *rows, *more])


def expectations_check(
    df: pd.DataFrame, errors: list[tuple[str, dict]], warnings: list[tuple[str, dict]], name: str
) -> dg.AssetCheckResult:
    """Great Expectations over `df` as an asset check result: fails when any expectation fails, with severity
    ERROR when one of `errors` (the table's structure) fails and WARN when only `warnings` (accepted data) do."""
    from synthdata.expectations import validate

    summary = validate(df, errors + warnings, name=name)
    structure_ok = all(o.success for o in summary.outcomes[: len(errors)])
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.WARN if structure_ok else dg.AssetCheckSeverity.ERROR,
        metadata={"rows": len(df), "results": dg.MetadataValue.md(summary.as_markdown()), "failed": len(summary.failed)},
    )
