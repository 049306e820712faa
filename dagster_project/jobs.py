import dagster as dg

from assets.partitions import daily_drops, model_families

# A drop's day: ingest it, then re-curate, re-split and re-augment everything downstream of it.
daily_ingest_job = dg.define_asset_job(
    "daily_ingest_job",
    selection=dg.AssetSelection.assets(
        "raw_images", "images", "label_issues", "image_issues", "splits", "augmented_images"
    ),
    partitions_def=daily_drops,
    # A run whose worker died (noticed by run monitoring) is re-launched once from the failed step: every step
    # replaces its rows in one transaction. Steps that fail on their own are not re-run this way.
    tags={"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"},
    description="Ingest one day's landing drop and refresh the curated tables (images, splits, augmented_images).",
)

# One model family: train, sample, evaluate and (behind the blocking quality gate) publish.
synthesis_job = dg.define_asset_job(
    "synthesis_job",
    # feature_extractor is not partitioned: it is reused (not retrained) while the train/val rows are unchanged.
    selection=dg.AssetSelection.assets(
        "generator", "synthetic_images", "feature_extractor", "quality_report", "training_set"
    ),
    partitions_def=model_families,
    description="Train one generator family, sample synthetic images, evaluate them and publish the training set.",
)
