"""Stage 2, curate: `images`, one row per unique image across all drops, and `duplicate_groups`."""


import json

import dagster as dg
import numpy as np

from assets._util import expectations_check, md_table
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.curate import class_retention, curate
from synthdata.curation.near_duplicates import active_rule
from synthdata.curation.gallery import duplicate_gallery, gallery_rows, limiting_gallery
from synthdata.dedup.calibrate import DEFAULT_CALIBRATION_IMAGES, DEFAULT_TARGET_FALSE_RATE, FIT_IMAGES
from synthdata.dedup.candidates import DEFAULT_RADIUS
from synthdata.dedup.codec import encoding_of


class CurateConfig(dg.Config):
    near_duplicates: bool = True
    # pHash Hamming radius for candidates (synthdata.dedup.candidates).
    hamming_radius: int = DEFAULT_RADIUS
    # The near-duplicate rule is calibrated on the data (synthdata.dedup.calibrate) for this share of distinct
    # images wrongly folded, from planted copies of `calibration_images` images drawn with `calibration_seed`.
    target_false_rate: float = DEFAULT_TARGET_FALSE_RATE
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    calibration_seed: int = 0
    # Calibrate again even though a rule is stored (every image is then compared again).
    recalibrate: bool = False
    # A stored rule is tested on planted copies of this many of each run's new images (0: not tested); a drop
    # it no longer fits fails the `images_near_rule_fits` check (WARN) and says to recalibrate.
    rule_fit_images: int = FIT_IMAGES
    # A fixed copy-distance threshold instead of the calibrated one (None: calibrate). It is a number on the scale
    # of the statistic in force (calibrate.STATISTIC, copy_distance/v7: the residual's L8 mean, never below the
    # root mean square that v3 took; v5 adds codec views and v6 8-bit resize views, which only lower distances,
    # v7 scores fewer resize views, which only raises some): one chosen under v3 needs choosing again.
    copy_distance_threshold: float | None = None
    # pHash partners each new image keeps (synthdata.dedup.partner_cap.CAP_CHOICES or any positive number). None:
    # chosen per run, the fewest that keep planted copies of its new images paired as 16 would.
    max_partners: int | None = None
    # Shift-hash partners each new image keeps (SHIFT_CAP_CHOICES or any positive number). None: chosen per run
    # after the pHash cap, the fewest that keep those copies paired as 8 would.
    shift_max_partners: int | None = None


@dg.asset(
    deps=["raw_images"],
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "One row per unique image across all drops. Exact duplicates (same decoded pixels, any encoding) and "
        "near-duplicates (pHash candidates within `hamming_radius`, each new image's nearest by Hamming distance "
        "and by the pHash's low frequencies, 2, 4, 8 or 16 of them as planted copies of the run's new images need "
        "(`near_max_partners`), plus shift hashes (1, 2, 4 or 8 nearest, chosen the same way: "
        "`near_shift_max_partners`), crop hashes, resized copies of images under 16 px and the low "
        "frequencies and 32x32 thumbnails of images whose pHash noise decides (symmetric drawings), "
        "confirmed by a copy distance after alignment "
        "and a brightness/contrast fit (a JPEG or WebP file is also compared with its partner encoded the way the "
        "file was), under a rule calibrated on this data set for `target_false_rate` and "
        "stored in `near_duplicate_rules`) collapse onto the first file seen (earliest drop, then path); a member "
        "joins only the group whose representative confirmed it (no chaining; where a confirmed pair links two "
        "groups, their representatives are compared directly: `near_representative_joins`); every other copy is "
        "recorded in `duplicate_groups` with its kind. New drops are compared against everything already accepted "
        "without rehashing old images. When known-distinct look-alikes hold a new rule below its copies, the "
        "closest of them are shown (`near_rule_limiting_pairs`) for a person to judge; when a new rule folds far more "
        "of its own drop than it estimates (`near_rule_drop_fold_rate`), it warns."
    ),
)
def images(
    context: dg.AssetExecutionContext,
    config: CurateConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    store = image_store.store()

    def load_pixels(blob_key: str) -> np.ndarray:
        return np.asarray(store.decode(blob_key).image)  # under the image_store's limits, as at ingest

    with warehouse.connect() as con:
        stats = curate(
            con, load_pixels, config.near_duplicates, config.hamming_radius, config.copy_distance_threshold,
            target_false_rate=config.target_false_rate, calibration_images=config.calibration_images,
            seed=config.calibration_seed, recalibrate=config.recalibrate, fit_images=config.rule_fit_images,
            load_encoding=lambda key: encoding_of(store.read(key)),  # JPEG / WebP files: how they were encoded
            max_partners=config.max_partners, shift_max_partners=config.shift_max_partners,
        )  # fmt: skip
        retention = class_retention(con)
        per_label = con.execute(
            "SELECT coalesce(label, '(none)') AS label, count(*) AS images FROM images GROUP BY 1 ORDER BY 1"
        ).df()
        per_drop = con.execute(
            """SELECT r.partition_date::VARCHAR AS drop, count(*) AS files,
                      count(*) FILTER (WHERE i.image_id IS NOT NULL AND i.source_path = r.source_path) AS kept,
                      count(*) FILTER (WHERE d.kind = 'exact') AS exact_dups,
                      count(*) FILTER (WHERE d.kind = 'near') AS near_dups
               FROM raw_images r
               LEFT JOIN images i ON i.image_id = r.image_id
               LEFT JOIN duplicate_groups d ON d.member_source = r.source_path
               GROUP BY 1 ORDER BY 1"""
        ).df()
        groups = con.execute("SELECT * FROM duplicate_groups ORDER BY kind DESC, hamming DESC LIMIT 200").df()
        shown = gallery_rows(groups)
        ids = list({i for pair in zip(shown["representative_id"], shown["member_id"]) for i in pair})
        keys = dict(con.execute(
            "SELECT DISTINCT image_id, blob_key FROM raw_images WHERE image_id IN (SELECT unnest(?))", [ids]
        ).fetchall())  # fmt: skip
        conflicts = con.execute("SELECT count(*) FROM images WHERE label_conflict").fetchone()[0]
        limiting = _limiting_gallery(con, stats, store)

    context.log.info(
        f"{stats.raw_files} raw files -> {stats.images} images; {stats.exact_duplicates} exact and "
        f"{stats.near_duplicates} near duplicates; {stats.new_compared} new images compared, "
        f"{stats.candidates} candidates, {stats.confirmed} confirmed"
        + (f"; {stats.representative_joins} of {stats.representative_checks} representatives of groups a pair "
           "links joined the earlier group" if stats.representative_checks else "")
    )
    if stats.partner_cap is not None:
        context.log.info(stats.partner_cap.describe())
    if stats.rule_change:
        context.log.warning(stats.rule_change)
    for warning in stats.rule.warnings if stats.rule else ():
        context.log.warning(warning)
    if stats.rule_fit is not None and not stats.rule_fit.fits:
        context.log.warning(stats.rule_fit.message)
    metadata: dict[str, object] = {
        "dagster/row_count": stats.images,
        "raw_files": stats.raw_files,
        "unique_images": stats.images,
        "exact_duplicates": stats.exact_duplicates,
        "near_duplicates": stats.near_duplicates,
        "new_images_compared": stats.new_compared,
        "near_candidates": stats.candidates,
        "near_candidates_small_images": stats.small_image_candidates,
        "near_candidates_fragile_phash": stats.fragile_phash_candidates,
        # New images whose nearest-partner caps (near_max_partners, near_shift_max_partners) left partners out.
        "near_capped_images_phash": stats.capped_images.get("phash", 0),
        "near_capped_images_shift": stats.capped_images.get("shift_hashes", 0),
        # How many pHash / shift-hash partners each new image kept, and the share of planted copies each cap
        # keeps paired.
        "near_max_partners": stats.partner_cap.max_partners if stats.partner_cap else 0,
        "near_shift_max_partners": stats.partner_cap.shift_max_partners if stats.partner_cap else 0,
        "near_partner_cap": stats.partner_cap.describe() if stats.partner_cap else "no new images",
        "near_partner_cap_by_transform": _shares_json(stats.partner_cap.by_kind if stats.partner_cap else {}),
        "near_shift_cap_by_transform": _shares_json(stats.partner_cap.shift_by_kind if stats.partner_cap else {}),
        "near_scored": stats.screened,
        "near_confirmed": stats.confirmed,
        # Representatives of two groups a confirmed pair links, compared directly, and how many joined
        "near_representative_checks": stats.representative_checks,
        "near_representative_joins": stats.representative_joins,
        "largest_group": stats.largest_group,
        "group_sizes": dg.MetadataValue.json({str(k): v for k, v in stats.group_sizes.items()}),
        "min_class_retained_fraction": float(retention["retained_fraction"].min()) if len(retention) else 1.0,
        "class_retention": dg.MetadataValue.md(md_table(retention.round(4), max_rows=500)),
        "label_conflicts": int(conflicts),
        "seconds": dg.MetadataValue.json({k: round(v, 3) for k, v in stats.seconds.items()}),
        "per_label": dg.MetadataValue.md(md_table(per_label, max_rows=500)),
        "per_drop": dg.MetadataValue.md(md_table(per_drop, max_rows=500)),
    }
    if stats.rule is not None:
        metadata |= _rule_metadata(stats)
    gallery = duplicate_gallery(shown, keys, store)
    if gallery:
        metadata["duplicate_gallery"] = dg.MetadataValue.md(gallery)
    if limiting:
        metadata["near_rule_limiting_pairs"] = dg.MetadataValue.md(limiting)
    return dg.MaterializeResult(metadata=metadata)


def _shares_json(by_kind: dict[str, dict[int, float]]) -> dg.MetadataValue:
    """Per transform, the share of planted copies each partner cap keeps paired (synthdata.dedup.partner_cap)."""
    return dg.MetadataValue.json({kind: {str(cap): round(v, 4) for cap, v in shares.items()}
                                  for kind, shares in by_kind.items()})  # fmt: skip


def _limiting_gallery(con, stats, store) -> str:
    """The gallery of the closest pairs a new rule took as known distinct, when they set its threshold."""
    if not stats.limiting_pairs:
        return ""
    ids = list({i for a, b, _ in stats.limiting_pairs for i in (a, b)})
    files = {image_id: (key, path, label) for image_id, key, path, label in con.execute(
        """SELECT image_id, any_value(blob_key), any_value(source_path), any_value(label) FROM raw_images
           WHERE image_id IN (SELECT unnest(?)) GROUP BY image_id""", [ids]
    ).fetchall()}  # fmt: skip
    return limiting_gallery(stats.limiting_pairs, files, stats.rule.threshold, store)


def _rule_metadata(stats) -> dict[str, object]:
    """The near-duplicate rule in force (a fixed rule has no estimates: NaN fields are left out)."""
    rule = stats.rule
    as_dict = {k: v for k, v in json.loads(rule.to_json()).items() if not (isinstance(v, float) and np.isnan(v))}
    out: dict[str, object] = {
        "near_rule_id": rule.rule_id,
        "near_rule_threshold": float(rule.threshold),
        "near_rule_recall": dg.MetadataValue.json({k: round(v, 4) for k, v in rule.recall.items()}),
        "near_rule": dg.MetadataValue.json(as_dict),
        "near_rule_changed": stats.rule_change or "no",
    }
    for name in ("target_false_rate", "est_false_rate"):
        if name in as_dict:
            out[f"near_rule_{name}"] = float(as_dict[name])
    if rule.drop_fold_rate is not None:
        out["near_rule_drop_fold_rate"] = float(rule.drop_fold_rate)
    if stats.observed_false_rate is not None:
        out["near_observed_false_rate"] = float(stats.observed_false_rate)
    if stats.rule_fit is not None:
        out["near_rule_fits_new_images"] = stats.rule_fit.fits
        out["near_rule_recall_new_images"] = dg.MetadataValue.json({k: round(v, 4) for k, v in stats.rule_fit.recall.items()})
    return out


@dg.asset_check(
    asset=images,
    blocking=True,
    description="Blocking. Dedup must not thin one class: WARN when it removes more than "
    "`QualityResource.class_removed_warn` of any class's distinct images, ERROR above `class_removed_error`.",
)
def images_class_balance(warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    with warehouse.read() as con:
        retention = class_retention(con)
    removed = 1.0 - retention["retained_fraction"]
    worst = retention.loc[removed.idxmax()] if len(retention) else None
    severity = dg.AssetCheckSeverity.WARN
    if len(retention) and removed.max() > quality.class_removed_error:
        severity = dg.AssetCheckSeverity.ERROR
    passed = not len(retention) or removed.max() <= quality.class_removed_warn
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=severity,
        metadata={
            "classes": len(retention),
            "max_removed_fraction": float(removed.max()) if len(retention) else 0.0,
            "worst_class": str(worst["label"]) if worst is not None else "",
            "warn_above": quality.class_removed_warn,
            "error_above": quality.class_removed_error,
            "class_retention": dg.MetadataValue.md(md_table(retention.round(4), max_rows=500)),
        },
    )


@dg.asset_check(
    asset=images,
    description="WARN when the stored near-duplicate rule, calibrated on earlier drops, keeps clearly fewer planted "
    "copies of the latest run's new images than it promised (`near_rule_fits`): those images may need another "
    "rule; set the images config `recalibrate: true`.",
)
def images_near_rule_fits(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.read() as con:
        row = con.execute(
            """SELECT f.rule_id, f.new_images, f.sampled, f.recall, f.promised, f.fits, f.message
               FROM near_rule_fits f JOIN near_duplicate_rules r ON r.rule_id = f.rule_id AND r.active
               ORDER BY f.checked_at DESC LIMIT 1"""
        ).fetchone()
    if row is None:
        return dg.AssetCheckResult(passed=True, metadata={"tested": "no run has been judged by a stored rule yet"})
    rule_id, new_images, sampled, recall, promised, fits, message = row
    return dg.AssetCheckResult(
        passed=bool(fits),
        severity=dg.AssetCheckSeverity.WARN,
        description=message or None,
        metadata={
            "rule_id": rule_id,
            "new_images": int(new_images),
            "sampled": int(sampled),
            "recall_new_images": dg.MetadataValue.json(json.loads(recall)),
            "recall_promised": dg.MetadataValue.json(json.loads(promised)),
        },
    )


@dg.asset_check(
    asset=images,
    description="WARN when the near-duplicate rule in force folded far more of the drop it was calibrated on than "
    "its known-distinct estimate allows (`drop_fold_rate` at least 10x the target or estimate, at least 5 images): "
    "that drop held this many near-duplicates, or look-alikes under one label that the estimate cannot see are "
    "folded. Look at the duplicate gallery; if they are distinct, set `copy_distance_threshold` below the threshold.",
)
def images_near_rule_estimate(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.read() as con:
        active = active_rule(con)
    if active is None:
        return dg.AssetCheckResult(passed=True, metadata={"tested": "no near-duplicate rule yet"})
    rule = active[0]
    if rule.drop_fold_rate is None:
        return dg.AssetCheckResult(passed=True, metadata={"tested": "not measured (a fixed or an older rule)",
                                                          "rule_id": rule.rule_id})  # fmt: skip
    warning = rule.fold_warning
    return dg.AssetCheckResult(
        passed=warning is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=warning,
        metadata={
            "rule_id": rule.rule_id,
            "threshold": float(rule.threshold),
            "drop_fold_rate": float(rule.drop_fold_rate),
            "drop_folded": int(rule.drop_folded),
            "est_false_rate": float(rule.est_false_rate),
            "target_false_rate": float(rule.target_false_rate),
        },
    )


@dg.asset_check(
    asset=images,
    description="Great Expectations: at least one image, unique ids, every image stored (ERROR); labels present, "
    "sides within the quality resource's min_side..max_side (WARN: unlabeled drops and odd sizes are accepted data).",
)
def images_expectations(warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    with warehouse.read() as con:
        df = con.execute("SELECT image_id, label, width, height, blob_key, n_files FROM images").df()
    side = quality.side_bounds()
    errors = [
        ("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        ("ExpectColumnValuesToBeUnique", {"column": "image_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "blob_key"}),
        ("ExpectColumnValuesToBeBetween", {"column": "n_files", "min_value": 1}),
    ]
    warnings = [
        ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
        ("ExpectColumnValuesToBeBetween", {"column": "width", **side}),
        ("ExpectColumnValuesToBeBetween", {"column": "height", **side}),
    ]
    return expectations_check(df, errors, warnings, name="images")
