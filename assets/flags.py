"""Curation flags: `label_issues` (likely mislabels, label conflicts among duplicates, rare classes) and
`image_issues` (blurry, dark, light, low information, near-constant, odd size or aspect, grayscale among colour).
Flags only: no image is removed or relabelled; a person reviews the galleries and decides."""

import functools

import dagster as dg

from assets._util import md_table
from resources import ImageStoreResource, WarehouseResource
from synthdata.curation.image_issues import ROBUST_Z, find_image_issues, flag_gallery
from synthdata.curation.label_issues import RARE_CLASS_FRACTION, find_label_issues
from synthdata.io.warehouse import replace_table


class LabelIssuesConfig(dg.Config):
    seed: int = 0  # fold assignment of the out-of-fold classifier
    n_folds: int = 5
    # The mislabel cutoff is the largest self-confidence at which the estimated precision of the flags still
    # reaches this (synthdata.curation.label_issues).
    target_precision: float = 0.8
    rare_class_fraction: float = RARE_CLASS_FRACTION


class ImageIssuesConfig(dg.Config):
    # Robust z-score (median / MAD of this set) beyond which a score is an outlier; a floor on the effect
    # applies as well (synthdata.curation.image_issues).
    robust_z: float = ROBUST_Z


# Both flag tables: rebuilt from all of `images` in one transaction, in the warehouse writers' pool.
flag_asset = functools.partial(dg.asset, deps=["images"], pool="duckdb", group_name="curation", kinds={"duckdb", "python"})


def _blob_keys(con, ids) -> dict[str, str]:
    sql = "SELECT image_id, blob_key FROM images WHERE image_id IN (SELECT unnest(?))"
    return dict(con.execute(sql, [list(ids)]).fetchall())


@flag_asset(
    description=(
        "Label flags for review, never deletions: likely mislabels (confident learning on out-of-fold "
        "probabilities of two linear views, pixels and oriented-gradient histograms, cutoff calibrated on the "
        "set for a target precision), labels that disagree among an image's duplicates, and images of rare classes."
    ),
)
def label_issues(
    context: dg.AssetExecutionContext,
    config: LabelIssuesConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    store = image_store.store()
    with warehouse.connect() as con:
        rows, summary = find_label_issues(
            con, store, config.seed, config.n_folds, config.target_precision, config.rare_class_fraction
        )
        replace_table(con, "label_issues", rows.assign(run_id=context.run_id))
        keys = _blob_keys(con, rows["image_id"])
    counts = {str(k): int(v) for k, v in summary["counts"].items()}
    context.log.info(f"label issues over {summary['labelled_images']} labelled images: {counts or 'none'}")
    metadata: dict[str, object] = {
        "dagster/row_count": len(rows),
        "labelled_images": summary["labelled_images"],
        **{f"{kind}_flags": counts.get(kind, 0) for kind in ("mislabel", "conflict", "class_imbalance")},
        "rare_classes": dg.MetadataValue.json(summary["rare_classes"]),
        "per_class": dg.MetadataValue.md(md_table(summary["per_class"], max_rows=500)),
    }
    for name in ("mislabel_cutoff", "estimated_noise_rate", "estimated_precision", "classifier_agreement"):
        if name in summary:
            metadata[name] = float(summary[name])
    if summary.get("mislabel_skipped"):
        metadata["mislabel_skipped"] = summary["mislabel_skipped"]
    gallery = flag_gallery(
        rows, keys, store, "kind",
        lambda r: f"`{r.image_id[:12]}` labelled {r.label!r} -> {r.suggested_label!r} ({r.detail})",
    )  # fmt: skip
    if gallery:
        metadata["gallery"] = dg.MetadataValue.md(gallery)
    return dg.MaterializeResult(metadata=metadata)


@flag_asset(
    description=(
        "Image-quality flags for review, never deletions: blurry, dark, light, low information, near-constant, "
        "odd aspect ratio or size, grayscale inside a colour set. Thresholds come from this set's own "
        "distribution (robust z-score with a floor on the effect), recorded per flag."
    ),
)
def image_issues(
    context: dg.AssetExecutionContext,
    config: ImageIssuesConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    store = image_store.store()
    with warehouse.connect() as con:
        rows, summary = find_image_issues(con, store, config.robust_z)
        replace_table(con, "image_issues", rows.assign(run_id=context.run_id))
        n_images = con.execute("SELECT count(*) FROM images").fetchone()[0]
        keys = _blob_keys(con, rows["image_id"].unique())
    counts = {issue: s["count"] for issue, s in summary.items()}
    context.log.info(f"image issues over {n_images} images: {counts}")
    metadata: dict[str, object] = {
        "dagster/row_count": len(rows),
        "images": int(n_images),
        "flagged_images": int(rows["image_id"].nunique()),
        **{f"{issue}_flags": int(n) for issue, n in counts.items()},
        "thresholds": dg.MetadataValue.json(
            {issue: {name: round(float(v), 6) for name, v in s.items()} for issue, s in summary.items()}
        ),
    }
    gallery = flag_gallery(
        rows.sort_values("score", kind="stable"), keys, store, "issue",
        lambda r: f"`{r.image_id[:12]}` score {r.score:.4f} (threshold {r.threshold:.4f})",
    )  # fmt: skip
    if gallery:
        metadata["gallery"] = dg.MetadataValue.md(gallery)
    return dg.MaterializeResult(metadata=metadata)
